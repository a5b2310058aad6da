// The admin UI's shell: navigation by location hash, the API key, one refresh loop for the
// panel on screen, and the live event feed every panel can react to.
import { ApiError, api, apiKey, onUnauthorized, setApiKey } from "./api.js";
import { CronPanel } from "./cron.js";
import { DeadLetterPanel } from "./deadletter.js";
import { h } from "./dom.js";
import { JobPanel, JobsPanel } from "./jobs.js";
import { EventFeed } from "./live.js";
import { QueuesPanel } from "./queues.js";
import { TreePanel } from "./tree.js";
import { WorkersPanel } from "./workers.js";
import { WorkflowsPanel } from "./workflows.js";

const PANELS = [QueuesPanel, JobsPanel, DeadLetterPanel, CronPanel, WorkflowsPanel, WorkersPanel, TreePanel, JobPanel];
const HIDDEN = new Set([JobPanel.id]); // reached from links, not from the menu
const RECENT = 50;
const KICK_GAP_MS = 500; // events ask for a refresh at most this often

class App {
  constructor() {
    this.panels = new Map(PANELS.map((Kind) => [Kind.id, new Kind(this)]));
    this.recent = [];
    this.generation = 0;
    this.locked = false;
    this.wake = () => {};
    this.lastKick = 0;
  }

  start() {
    const main = document.getElementById("panels");
    const nav = document.getElementById("nav");
    for (const [id, panel] of this.panels) {
      main.append(panel.el);
      if (!HIDDEN.has(id)) nav.append(h("a", { href: `#${id}`, dataset: { panel: id } }, panel.constructor.title));
    }
    document.getElementById("key-button").addEventListener("click", () => this.askKey());
    document.getElementById("key-form").addEventListener("submit", (event) => this.saveKey(event));
    document.getElementById("key-forget").addEventListener("click", () => { setApiKey(""); this.saveKey(); });
    document.addEventListener("visibilitychange", () => this.kick());
    onUnauthorized(() => this.askKey(apiKey() ? "The server refused this key." : "This server needs an API key."));
    window.addEventListener("hashchange", () => this.route());
    this.route();
    this.about();
    this.feed = new EventFeed((event, fresh) => this.event(event, fresh), (mode) => this.setMode(mode));
    this.feed.run();
  }

  route() {
    const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
    const panel = this.panels.get(name) ?? this.panels.get("queues");
    const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
    for (const other of this.panels.values()) other.el.hidden = other !== panel;
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("current", link.dataset.panel === panel.constructor.id
        || (panel.constructor.id === "job" && link.dataset.panel === "jobs"));
    }
    document.title = `${panel.constructor.title} · OJS admin`;
    panel.show(arg);
    this.active = panel;
    this.loop(panel, ++this.generation);
  }

  // One refresh at a time for the panel on screen, every `interval` or sooner when kicked.
  async loop(panel, generation) {
    while (generation === this.generation) {
      if (!document.hidden && !this.locked) await this.refresh(panel);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, panel.interval);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
    }
  }

  async refresh(panel) {
    try {
      await panel.refresh();
      panel.setError(null);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      panel.setError(error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : `Cannot reach the server: ${error.message}`);
    }
  }

  kick() {
    const now = Date.now();
    if (now - this.lastKick < KICK_GAP_MS) {
      clearTimeout(this.kickTimer);
      this.kickTimer = setTimeout(() => this.kick(), KICK_GAP_MS);
      return;
    }
    this.lastKick = now;
    this.wake();
  }

  event(event, fresh) {
    if (!fresh) return;
    this.recent.unshift(event);
    this.recent.length = Math.min(this.recent.length, RECENT);
    if (this.active?.onEvent(event)) this.kick();
  }

  setMode(mode) {
    const pill = document.getElementById("mode");
    const labels = { live: "live (SSE)", polling: "live (polling)", offline: "offline", locked: "key needed" };
    pill.textContent = labels[mode] ?? mode;
    pill.dataset.mode = mode;
  }

  async about() {
    try {
      const manifest = await api("GET", "/ojs/manifest");
      const impl = manifest.implementation ?? {};
      document.getElementById("server").textContent = `${impl.name ?? "OJS"} ${impl.version ?? ""} · ${manifest.backend ?? impl.backend ?? ""}`;
    } catch { /* shown once the key is in */ }
  }

  askKey(reason = "") {
    this.locked = Boolean(reason);
    document.getElementById("key-reason").textContent = reason || "The key is kept in this tab only (sessionStorage).";
    const dialog = document.getElementById("key-dialog");
    if (!dialog.open) dialog.showModal();
    document.getElementById("key-input").focus();
  }

  saveKey(event) {
    event?.preventDefault();
    const input = document.getElementById("key-input");
    if (event) setApiKey(input.value.trim());
    input.value = "";
    document.getElementById("key-dialog").close();
    this.locked = false;
    this.about();
    this.feed.wake(); // retry the event stream now, with the key
    this.kick();
  }
}

new App().start();
