// The same program as desk.py in the @openai/agents TypeScript form (asTool, handoffs,
// handoffDescription), in the shape of Agent Builder's Code export.
import { Agent, AgentInputItem, Runner, withTrace, handoff } from "@openai/agents";

const billingAgent = new Agent({
  name: "Billing agent",
  instructions: "You answer questions about invoices and refunds.",
  model: "gpt-4.1-mini",
  handoffDescription: "Answers questions about invoices and refunds."
});

const researcher = new Agent({
  name: "Researcher",
  instructions: "Find the facts about an order.",
  model: "gpt-4.1-mini"
});

const writer = new Agent({
  name: "Writer",
  instructions: "Write a short, friendly reply.",
  model: "gpt-4.1-mini",
  handoffs: [billingAgent]
});

const triage = new Agent({
  name: "Triage",
  instructions: "Use the specialists, then hand billing questions to the billing agent.",
  model: "gpt-4.1",
  tools: [
    researcher.asTool({ toolName: "research", toolDescription: "Find the facts about an order." }),
    writer.asTool({ toolName: "write_reply", toolDescription: "Write the reply." })
  ],
  handoffs: [billingAgent, handoff(writer, { toolNameOverride: "to_writer" })],
  modelSettings: {
    temperature: 0.2
  }
});

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("desk", async () => {
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const runner = new Runner({
      traceMetadata: {
        __trace_source__: "agent-builder"
      }
    });
    const triageResultTemp = await runner.run(
      triage,
      [
        ...conversationHistory
      ]
    );
    conversationHistory.push(...triageResultTemp.newItems.map((item) => item.rawItem));

    if (!triageResultTemp.finalOutput) {
        throw new Error("Agent result is undefined");
    }

    const triageResult = {
      output_text: triageResultTemp.finalOutput ?? ""
    };
    return triageResult;
  });
}
