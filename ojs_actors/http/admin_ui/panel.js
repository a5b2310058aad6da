// What every panel shares: a titled section, an error line, and a body redrawn on refresh.
import { h } from "./dom.js";

export class Panel {
  static id = "";
  static title = "";
  interval = 2000;

  constructor(app) {
    this.app = app;
    this.tools = h("div", { class: "tools" });
    this.error = h("div", { class: "panel-error", role: "alert", hidden: true });
    this.body = h("div", { class: "panel-body" });
    this.el = h("section", { class: "panel", id: `panel-${this.constructor.id}`, hidden: true },
      h("header", { class: "panel-head" }, h("h2", {}, this.constructor.title), this.tools),
      this.error, this.body);
  }

  // Called when the panel is shown; `arg` is the rest of the location hash (an id).
  show(arg) { this.arg = arg; }

  async refresh() {}

  // A lifecycle event arrived; true asks for a refresh now.
  onEvent(event) { return false; }

  setError(message) {
    this.error.hidden = !message;
    this.error.textContent = message ?? "";
  }
}
