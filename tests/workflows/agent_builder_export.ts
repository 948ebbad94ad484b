import { Agent, AgentInputItem, Runner, withTrace } from "@openai/agents";
import { z } from "zod";


const ClassifySchema = z.object({ kind: z.enum(["refund", "other"]), order_id: z.number() });
const classify = new Agent({
  name: "Classify",
  instructions: "Classify the customer's message and extract the order id.",
  model: "gpt-4.1-mini",
  outputType: ClassifySchema,
  modelSettings: {
    reasoning: {
      effort: "low",
      summary: "auto"
    },
    store: true
  }
});

const refund = new Agent({
  name: "Refund",
  instructions: "Refund the order.",
  model: "gpt-4.1-mini",
  modelSettings: {
    temperature: 0.2,
    store: true
  }
});

const approvalRequest = (message: string) => {

  // TODO: Implement
  return true;
}

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("Refunds", async () => {
    const state = {
      attempts: 0
    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const runner = new Runner({
      traceMetadata: {
        __trace_source__: "agent-builder",
        workflow_id: "wf_68f0e0d1c2b3"
      }
    });
    const classifyResultTemp = await runner.run(
      classify,
      [
        ...conversationHistory
      ]
    );
    conversationHistory.push(...classifyResultTemp.newItems.map((item) => item.rawItem));

    if (!classifyResultTemp.finalOutput) {
        throw new Error("Agent result is undefined");
    }

    const classifyResult = {
      output_text: JSON.stringify(classifyResultTemp.finalOutput),
      output_parsed: classifyResultTemp.finalOutput
    };
    if (classifyResult.output_parsed.kind == "refund") {
      state.attempts = state.attempts + 1;
      const approvalMessage = "Refund this order?";

      if (approvalRequest(approvalMessage)) {
          const refundResultTemp = await runner.run(
            refund,
            [
              ...conversationHistory
            ]
          );
          conversationHistory.push(...refundResultTemp.newItems.map((item) => item.rawItem));

          if (!refundResultTemp.finalOutput) {
              throw new Error("Agent result is undefined");
          }

          const refundResult = {
            output_text: refundResultTemp.finalOutput ?? ""
          };
          return refundResult;
      } else {
          return classifyResult;
      }
    } else {
      return classifyResult;
    }
  });
}
