// Workflows: one drawn as its graph with each step's state; running ones found in the tree.
import { ApiError, api } from "./api.js";
import { badge, enc, h, table, when } from "./dom.js";
import { drawWorkflow } from "./graph.js";
import { Panel } from "./panel.js";

export class WorkflowsPanel extends Panel {
  static id = "workflows";
  static title = "Workflows";

  constructor(app) {
    super(app);
    this.idInput = h("input", { name: "workflow", placeholder: "Workflow id", autocomplete: "off" });
    this.tools.append(h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      if (this.idInput.value.trim()) location.hash = `#workflows/${enc(this.idInput.value.trim())}`;
    } }, this.idInput, h("button", { type: "submit" }, "Show")));
  }

  async refresh() {
    const running = await this.running();
    const parts = [];
    if (this.arg) {
      try {
        const { workflow } = await api("GET", `/ojs/v1/workflows/${enc(this.arg)}`);
        parts.push(this.detail(workflow));
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        parts.push(h("p", { class: "hint" }, `No workflow ${this.arg}.`));
      }
    }
    parts.push(h("h3", {}, "Running in this process"), table(["Workflow"], running.map((id) =>
      h("tr", {}, h("td", {}, h("a", { href: `#workflows/${enc(id)}` }, id)))),
    "No workflow actor is running: open a finished workflow by its id."));
    this.body.replaceChildren(...parts);
  }

  // Each running workflow has an actor `workflow:<id>` under the workflows supervisor.
  async running() {
    const { tree } = await api("GET", "/ojs/v1/admin/system/tree?limit=1000").catch(() => ({ tree: null }));
    const workflows = tree?.children?.find((child) => child.name === "workflows");
    return (workflows?.children ?? []).map((child) => child.name)
      .filter((name) => name.startsWith("workflow:")).map((name) => name.slice("workflow:".length));
  }

  detail(workflow) {
    const meta = workflow.metadata ?? {};
    return h("div", { class: "workflow" },
      h("div", { class: "job-head" }, h("strong", {}, workflow.name ?? "(unnamed)"), " ",
        h("code", {}, workflow.id), " ", badge(workflow.type ?? "dag", "kind"), " ", badge(workflow.state)),
      h("p", { class: "hint" }, `${meta.completed_count ?? 0} of ${meta.job_count ?? "?"} steps completed`,
        meta.failed_count ? `, ${meta.failed_count} failed` : "", " · created ", when(workflow.created_at)),
      h("div", { class: "graph-box" }, drawWorkflow(workflow)));
  }
}
