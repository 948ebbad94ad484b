// Agent Builder's TypeScript Code export of the shared case
// tool_nodes--guardrails--guardrails_moderation (Start -> Guardrails: moderation, continue on error),
// written by hand in the shape the @openai/agents export has.
import { AgentInputItem, withTrace } from "@openai/agents";
import { OpenAI } from "openai";
import { runGuardrails } from "@openai/guardrails";

// Shared client for guardrails and file search
const client = new OpenAI({ apiKey: process.env.OPENAI_API_KEY });

// Guardrails definitions
const guardrailsConfig = {
  guardrails: [
    { name: "Moderation", config: { categories: ["sexual/minors", "hate/threatening", "harassment/threatening", "self-harm/instructions", "violence/graphic", "illicit/violent"] } }
  ]
};
const context = { guardrailLlm: client };

// Guardrails utils

function guardrailsHasTripwire(results: any[]): boolean {
    return (results ?? []).some((r) => r?.tripwireTriggered === true);
}

function getGuardrailSafeText(results: any[], fallbackText: string): string {
    for (const r of results ?? []) {
        if (r?.info && ("checked_text" in r.info)) {
            return r.info.checked_text ?? fallbackText;
        }
    }
    const pii = (results ?? []).find((r) => r?.info && "anonymized_text" in r.info);
    return pii?.info?.anonymized_text ?? fallbackText;
}

function buildGuardrailFailOutput(results: any[]) {
    const failures = (results ?? []).filter((r) => r?.tripwireTriggered).map((r) => ({ guardrail_name: r?.info?.guardrail_name }));
    return { failed: failures.length > 0, failures };
}

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("tdd", async () => {
    const state = {

    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    try {
      const guardrailsInputtext = workflow.input_as_text;
      const guardrailsResult = await runGuardrails(guardrailsInputtext, guardrailsConfig, context, true);
      const guardrailsHastripwire = guardrailsHasTripwire(guardrailsResult);
      const guardrailsAnonymizedtext = getGuardrailSafeText(guardrailsResult, guardrailsInputtext);
      const guardrailsOutput = (guardrailsHastripwire ? buildGuardrailFailOutput(guardrailsResult ?? []) : { safe_text: (guardrailsAnonymizedtext ?? guardrailsInputtext) });
      if (guardrailsHastripwire) {
        return guardrailsOutput;
      } else {
        return guardrailsOutput;
      }
    } catch (guardrailsError) {
      const guardrailsErrorresult = {
        message: guardrailsError?.message ?? "Unknown error"
      };
    }
  });
}
