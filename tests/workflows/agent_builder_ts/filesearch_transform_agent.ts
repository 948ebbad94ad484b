// Agent Builder's TypeScript Code export of the shared case
// tool_nodes--file_search--filesearch_transform_agent (File search -> Transform -> Agent -> End),
// written by hand in the shape the @openai/agents export has.
import { Agent, AgentInputItem, Runner, withTrace } from "@openai/agents";
import { OpenAI } from "openai";

// Shared client for guardrails and file search
const client = new OpenAI({ apiKey: process.env.OPENAI_API_KEY });
const agent = new Agent({
  name: "Agent",
  instructions: "",
  model: "gpt-5",
  modelSettings: {
    reasoning: {
      effort: "low",
      summary: "auto"
    },
    store: true
  }
});

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("tdd", async () => {
    const state = {
      string_var_name: "tom",
      num_var: 0
    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const runner = new Runner({
      traceMetadata: {
        __trace_source__: "agent-builder",
        workflow_id: "wf_68f1d086b5cc8190b8d6a8a9e81bea13"
      }
    });
    const filesearchResult = (await client.vectorStores.search("", {query: ``,
    max_num_results: 10})).data.map((result) => {
      return {
        id: result.file_id,
        filename: result.filename,
        score: result.score,
      }
    });
    const transformResult = {};
    const agentResultTemp = await runner.run(
      agent,
      [
        ...conversationHistory
      ]
    );
    conversationHistory.push(...agentResultTemp.newItems.map((item) => item.rawItem));

    if (!agentResultTemp.finalOutput) {
        throw new Error("Agent result is undefined");
    }

    const agentResult = {
      output_text: agentResultTemp.finalOutput ?? ""
    };
    return agentResult;
  });
}
