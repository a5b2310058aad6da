// A workflow as its graph: steps in layers by dependency depth (left to right), edges as
// curves from each dependency, each step coloured by its state. Plain SVG.
import { enc, s } from "./dom.js";

const W = 168;
const H = 48;
const GAP_X = 64;
const GAP_Y = 18;
const PAD = 16;

// Steps and their dependencies, whatever the workflow's kind.
export function steps(workflow) {
  if (Array.isArray(workflow.steps) && workflow.steps.some((step) => "depends_on" in step)) {
    return workflow.steps.map((step) => ({ ...step, key: step.id, deps: step.depends_on ?? [] }));
  }
  if (workflow.type === "chain") {
    return (workflow.steps ?? []).map((step, i) => ({ ...step, key: `s${i}`, deps: i ? [`s${i - 1}`] : [] }));
  }
  const members = (workflow.jobs ?? workflow.steps ?? []).map((job, i) => ({ ...job, key: `j${i}`, deps: [] }));
  const callbacks = Object.entries(workflow.callbacks ?? {}).map(([role, job]) => ({
    ...job, key: `cb-${role}`, name: job.name ?? role, deps: members.map((m) => m.key),
  }));
  return [...members, ...callbacks];
}

export function layout(nodes) {
  const byKey = new Map(nodes.map((node) => [node.key, node]));
  const depth = new Map();
  const level = (node, seen = new Set()) => {
    if (depth.has(node.key)) return depth.get(node.key);
    if (seen.has(node.key)) return 0; // a cycle cannot happen; never loop if it did
    seen.add(node.key);
    const parents = node.deps.map((key) => byKey.get(key)).filter(Boolean);
    const value = parents.length ? 1 + Math.max(...parents.map((p) => level(p, seen))) : 0;
    depth.set(node.key, value);
    return value;
  };
  const layers = [];
  for (const node of nodes) (layers[level(node)] ??= []).push(node);
  const row = new Map();
  layers.forEach((layer, x) => {
    if (x > 0) { // order by the parents' average row: fewer crossing edges
      const weight = (node) => {
        const rows = node.deps.map((key) => row.get(key)).filter((r) => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
      };
      layer.sort((a, b) => weight(a) - weight(b));
    }
    layer.forEach((node, y) => row.set(node.key, y));
  });
  const tallest = Math.max(1, ...layers.map((layer) => layer.length));
  const place = new Map();
  layers.forEach((layer, x) => {
    const offset = ((tallest - layer.length) * (H + GAP_Y)) / 2;
    layer.forEach((node, y) => place.set(node.key, { x: PAD + x * (W + GAP_X), y: PAD + offset + y * (H + GAP_Y) }));
  });
  return {
    place,
    width: PAD * 2 + layers.length * W + Math.max(0, layers.length - 1) * GAP_X,
    height: PAD * 2 + tallest * H + (tallest - 1) * GAP_Y,
  };
}

export function drawWorkflow(workflow) {
  const nodes = steps(workflow);
  const { place, width, height } = layout(nodes);
  const svg = s("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Graph of workflow ${workflow.name ?? workflow.id}` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))));
  for (const node of nodes) {
    const to = place.get(node.key);
    for (const key of node.deps) {
      const from = place.get(key);
      if (!from) continue;
      const [x1, y1, x2, y2] = [from.x + W, from.y + H / 2, to.x, to.y + H / 2];
      const bend = GAP_X / 2;
      svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": "url(#arrow)" }));
    }
  }
  for (const node of nodes) {
    const { x, y } = place.get(node.key);
    const label = node.name ?? node.id ?? node.type ?? node.key;
    const box = s("g", { class: `step state-${node.state}`, transform: `translate(${x},${y})`, "data-step": node.key },
      s("title", {}, `${label}: ${node.type ?? ""} — ${node.state}${node.job_id ? ` (job ${node.job_id})` : ""}`),
      s("rect", { width: W, height: H, rx: 7 }),
      s("text", { x: 10, y: 19, class: "step-name" }, clip(label, 22)),
      s("text", { x: 10, y: 36, class: "step-meta" }, `${node.state}${node.type && node.type !== label ? ` · ${clip(node.type, 16)}` : ""}`));
    svg.append(node.job_id ? s("a", { href: `#job/${enc(node.job_id)}` }, box) : box);
  }
  return svg;
}

const clip = (text, size) => (String(text).length > size ? `${String(text).slice(0, size - 1)}…` : String(text));
