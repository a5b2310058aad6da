// The live supervision tree: every supervisor and actor, its state, mailbox and restarts.
import { api } from "./api.js";
import { badge, enc, h, number } from "./dom.js";
import { Panel } from "./panel.js";

export class TreePanel extends Panel {
  static id = "supervision";
  static title = "Supervision tree";
  interval = 1000;

  constructor(app) {
    super(app);
    this.collapsed = new Set();
    this.restarts = new Map(); // path -> restarts last seen: a restart since then flashes
  }

  async refresh() {
    const { tree } = await api("GET", "/ojs/v1/admin/system/tree");
    const totals = { actors: 0, supervisors: 0, queued: 0, restarts: 0, down: 0 };
    const count = (node) => {
      totals[node.kind === "actor" ? "actors" : "supervisors"] += 1;
      totals.queued += node.mailbox_depth ?? 0;
      totals.restarts += node.restarts;
      if (node.state !== "running") totals.down += 1;
      node.children.forEach(count);
    };
    count(tree);
    this.body.replaceChildren(
      h("p", { class: "tree-summary" }, `${totals.supervisors} supervisors, ${totals.actors} actors · `,
        `${number(totals.queued)} messages queued · ${totals.restarts} restarts`,
        totals.down ? h("strong", { class: "warn" }, ` · ${totals.down} not running`) : ""),
      h("ul", { class: "tree", role: "tree" }, this.node(tree, tree.name)),
      h("p", { class: "hint" }, "This server process's actors, refreshed every second."));
  }

  node(node, path) {
    const before = this.restarts.get(path);
    this.restarts.set(path, node.restarts);
    const flash = before !== undefined && node.restarts > before;
    const open = !this.collapsed.has(path);
    const toggle = node.kind === "supervisor" ? h("button", { type: "button", class: "toggle", "aria-label": open ? "Collapse" : "Expand",
      onclick: () => { open ? this.collapsed.add(path) : this.collapsed.delete(path); this.app.kick(); } }, open ? "▾" : "▸") : h("span", { class: "toggle" });
    const row = h("div", { class: `tree-row ${flash ? "flash" : ""}`, dataset: { actor: node.name, state: node.state, kind: node.kind } },
      toggle,
      h("span", { class: "tree-name" }, link(node.name)),
      h("span", { class: "tree-type" }, node.type),
      badge(node.state),
      node.kind === "actor"
        ? h("span", { class: "mailbox", title: `${node.mailbox_depth} of ${node.mailbox_capacity} messages` },
          h("meter", { min: 0, max: node.mailbox_capacity || 1, high: (node.mailbox_capacity || 1) * 0.8, value: node.mailbox_depth }),
          h("span", { class: "num" }, number(node.mailbox_depth)))
        : h("span", { class: "mailbox hint" }, `${node.strategy} · ${node.children_total} children`),
      h("span", { class: `restarts ${node.restarts ? "warn" : ""}` }, `${node.restarts} restarts`));
    const more = node.children_total - node.children.length;
    return h("li", { role: "treeitem", "aria-expanded": node.kind === "supervisor" ? String(open) : null }, row,
      node.children.length && open ? h("ul", { role: "group" }, node.children.map((child) => this.node(child, `${path}/${child.name}`)),
        more > 0 ? h("li", { class: "hint" }, `… and ${more} more`) : null) : null);
  }
}

// Queue and workflow actors link to what they run.
function link(name) {
  const [kind, ...rest] = name.split(":");
  const id = rest.join(":");
  if (kind === "queue" && id) return h("a", { href: `#jobs/${enc(id)}` }, name);
  if (kind === "workflow" && id) return h("a", { href: `#workflows/${enc(id)}` }, name);
  return name;
}
