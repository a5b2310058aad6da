// DOM helpers: elements are built, never parsed from strings, so data is always text.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  return fill(element, attrs, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  return fill(element, attrs, children);
}

function fill(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return element;
}

export const enc = encodeURIComponent;

export function time(iso, precise = false) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    ...(precise ? { fractionalSecondDigits: 3 } : {}),
  });
}

export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  if (Number.isNaN(seconds)) return "";
  const size = Math.abs(seconds);
  const [value, unit] = size < 60 ? [size, "s"] : size < 3600 ? [Math.round(size / 60), "min"]
    : size < 86400 ? [Math.round(size / 3600), "h"] : [Math.round(size / 86400), "d"];
  return seconds >= 0 ? `in ${value} ${unit}` : `${value} ${unit} ago`;
}

export function when(iso) {
  return h("span", { title: iso ?? "" }, time(iso), iso ? h("small", {}, ` (${relative(iso)})`) : null);
}

export const number = (value) => (value === undefined || value === null ? "—"
  : Number(value).toLocaleString(undefined, { maximumFractionDigits: 1 }));

export const badge = (text, kind = text) => h("span", { class: `badge badge-${kind}` }, text);

export function pre(value) {
  return h("pre", { class: "json" }, value === undefined ? "—" : JSON.stringify(value, null, 2));
}

// A heading is its text, or [text, class] (e.g. "num": right-aligned like its numbers).
export function table(headings, rows, empty = "Nothing here.") {
  return h("table", {},
    h("thead", {}, h("tr", {}, headings.map((heading) => (Array.isArray(heading)
      ? h("th", { class: heading[1] }, heading[0]) : h("th", {}, heading))))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: headings.length, class: "empty" }, empty))));
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", ...attrs, onclick: async (event) => {
    const target = event.currentTarget;
    target.disabled = true;
    try { await onclick(event); } finally { target.disabled = false; }
  } }, label);
}

// A short-lived message at the bottom of the page: what an action did, or why it failed.
export function toast(message, kind = "info") {
  const area = document.getElementById("toasts");
  const note = h("div", { class: `toast toast-${kind}`, role: "status" }, message);
  area.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 4000);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
