// Agent Builder's TypeScript Code export of the shared case
// tool_nodes--guardrails--guardrails_with_multiple_and_labels (four Guardrails nodes in a row, each
// passing its checked text to the next), written by hand in the shape the @openai/agents export has.
import { AgentInputItem, withTrace } from "@openai/agents";
import { OpenAI } from "openai";
import { runGuardrails } from "@openai/guardrails";

// Shared client for guardrails and file search
const client = new OpenAI({ apiKey: process.env.OPENAI_API_KEY });

// Guardrails definitions
const guardrailsConfig = { guardrails: [] };
const guardrailsConfig1 = {
  guardrails: [

  ]
};
const guardrailsConfig2 = { guardrails: [] };
const guardrailsConfig3 = { guardrails: [] };
const context = { guardrailLlm: client };

function guardrailsHasTripwire(results: any[]): boolean {
    return (results ?? []).some((r) => r?.tripwireTriggered === true);
}

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("tdd", async () => {
    const state = {
      string_var_name: "tom"
    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const guardrailsInputtext = workflow.input_as_text;
    const guardrailsResult = await runGuardrails(guardrailsInputtext, guardrailsConfig, context, true);
    const guardrailsHastripwire = guardrailsHasTripwire(guardrailsResult);
    const guardrailsAnonymizedtext = getGuardrailSafeText(guardrailsResult, guardrailsInputtext);
    const guardrailsOutput = (guardrailsHastripwire ? buildGuardrailFailOutput(guardrailsResult ?? []) : { safe_text: (guardrailsAnonymizedtext ?? guardrailsInputtext) });
    if (guardrailsHastripwire) {
      return guardrailsOutput;
    } else {
      const guardrailsInputtext1 = guardrailsOutput.safe_text;
      const guardrailsResult1 = await runGuardrails(guardrailsInputtext1, guardrailsConfig1, context, true);
      const guardrailsHastripwire1 = guardrailsHasTripwire(guardrailsResult1);
      const guardrailsAnonymizedtext1 = getGuardrailSafeText(guardrailsResult1, guardrailsInputtext1);
      const guardrailsOutput1 = (guardrailsHastripwire1 ? buildGuardrailFailOutput(guardrailsResult1 ?? []) : { safe_text: (guardrailsAnonymizedtext1 ?? guardrailsInputtext1) });
      if (guardrailsHastripwire1) {
        return guardrailsOutput1;
      } else {
        const guardrailsInputtext2 = guardrailsOutput1.safe_text;
        const guardrailsResult2 = await runGuardrails(guardrailsInputtext2, guardrailsConfig2, context, true);
        const guardrailsHastripwire2 = guardrailsHasTripwire(guardrailsResult2);
        const guardrailsAnonymizedtext2 = getGuardrailSafeText(guardrailsResult2, guardrailsInputtext2);
        const guardrailsOutput2 = (guardrailsHastripwire2 ? buildGuardrailFailOutput(guardrailsResult2 ?? []) : { safe_text: (guardrailsAnonymizedtext2 ?? guardrailsInputtext2) });
        if (guardrailsHastripwire2) {
          return guardrailsOutput2;
        } else {
          const guardrailsInputtext3 = guardrailsOutput2.safe_text;
          const guardrailsResult3 = await runGuardrails(guardrailsInputtext3, guardrailsConfig3, context, true);
          const guardrailsHastripwire3 = guardrailsHasTripwire(guardrailsResult3);
          const guardrailsAnonymizedtext3 = getGuardrailSafeText(guardrailsResult3, guardrailsInputtext3);
          const guardrailsOutput3 = (guardrailsHastripwire3 ? buildGuardrailFailOutput(guardrailsResult3 ?? []) : { safe_text: (guardrailsAnonymizedtext3 ?? guardrailsInputtext3) });
          if (guardrailsHastripwire3) {
            return guardrailsOutput3;
          } else {
            return guardrailsOutput3;
          }
        }
      }
    }
  });
}
