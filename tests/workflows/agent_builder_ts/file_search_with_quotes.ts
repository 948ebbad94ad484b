// Agent Builder's TypeScript Code export of the shared case
// tool_nodes--file_search--file_search_with_quotes (one File search over vector store 123, its
// query holding double quotes), written by hand in the shape the @openai/agents export has.
import { AgentInputItem, withTrace } from "@openai/agents";
import { OpenAI } from "openai";

// Shared client for guardrails and file search
const client = new OpenAI({ apiKey: process.env.OPENAI_API_KEY });

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("tdd", async () => {
    const state = {

    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const filesearchResult = (await client.vectorStores.search("123", {query: `search query "with" quotes`,
    max_num_results: 10})).data.map((result) => {
      return {
        id: result.file_id,
        filename: result.filename,
        score: result.score,
      }
    });
  });
}
