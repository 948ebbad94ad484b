# An Agents SDK Python program in the shape of Agent Builder's Code export, with multi-agent parts
# written from the Agents SDK docs: specialists offered as tools (`agent.as_tool(...)`) and
# handoffs (`handoffs=[agent, handoff(agent)]`, `handoff_description=`).
from agents import Agent, ModelSettings, RunConfig, Runner, TResponseInputItem, handoff
from pydantic import BaseModel

billing_agent = Agent(
  name="Billing agent",
  instructions="You answer questions about invoices and refunds.",
  model="gpt-4.1-mini",
  handoff_description="Answers questions about invoices and refunds.",
)

researcher = Agent(
  name="Researcher",
  instructions="Find the facts about an order.",
  model="gpt-4.1-mini",
)

writer = Agent(
  name="Writer",
  instructions="Write a short, friendly reply.",
  model="gpt-4.1-mini",
  handoffs=[billing_agent],
)

triage = Agent(
  name="Triage",
  instructions="Use the specialists, then hand billing questions to the billing agent.",
  model="gpt-4.1",
  tools=[
    researcher.as_tool(tool_name="research", tool_description="Find the facts about an order."),
    writer.as_tool(tool_name="write_reply", tool_description="Write the reply."),
  ],
  handoffs=[billing_agent, handoff(writer, tool_name_override="to_writer")],
  model_settings=ModelSettings(temperature=0.2),
)


class WorkflowInput(BaseModel):
  input_as_text: str


# Main code entrypoint
async def run_workflow(workflow_input: WorkflowInput):
  workflow = workflow_input.model_dump()
  conversation_history: list[TResponseInputItem] = [
    {
      "role": "user",
      "content": [
        {
          "type": "input_text",
          "text": workflow["input_as_text"]
        }
      ]
    }
  ]
  triage_result_temp = await Runner.run(
    triage,
    input=[
      *conversation_history
    ],
    run_config=RunConfig(trace_metadata={
      "__trace_source__": "agent-builder",
    })
  )

  conversation_history.extend([item.to_input_item() for item in triage_result_temp.new_items])

  triage_result = {
    "output_text": triage_result_temp.final_output_as(str)
  }
  return triage_result
