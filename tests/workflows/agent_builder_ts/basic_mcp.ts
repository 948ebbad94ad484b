// Agent Builder's TypeScript Code export of the shared case logic_nodes--mcp--basic_mcp (one MCP
// node calling database_query on an HTTP server with a bearer token), written by hand in the
// shape of the Python export, with the @modelcontextprotocol/sdk client.
import { AgentInputItem, withTrace } from "@openai/agents";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

type WorkflowInput = { input_as_text: string };


// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("tdd", async () => {
    const state = {

    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    // MCP Client initialization (HTTP/SSE)
    const mcpTransport = new SSEClientTransport(new URL("https://api.example.com/mcp"), {
      requestInit: {
        headers: {
          Authorization: "Bearer sk-test-token-123"
        }
      }
    });
    const mcpClient = new Client({ name: "agent-builder-workflow", version: "1.0.0" });
    await mcpClient.connect(mcpTransport);

    // Call MCP tool
    const mcpResult = await mcpClient.callTool({
      name: "database_query",
      arguments: {
        table: "users",
        limit: 10
      }
    });

    // Close connection
    await mcpClient.close();
    return workflow;
  });
}
