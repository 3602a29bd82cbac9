// conpaassql front-end: refreshes parts of the pages, sends actions (with the CSRF
// token), watches long actions, draws the charts, uploads dumps with progress.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const toggles = new Map(); // class name -> shown

  // -- messages -------------------------------------------------------------

  function flash(kind, text) {
    const box = document.createElement("div");
    box.className = "banner " + kind;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.dataset.testid = kind === "error" ? "flash-error" : "flash-ok";
    const span = document.createElement("span");
    span.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link close";
    close.setAttribute("aria-label", "dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => box.remove());
    box.append(span, close);
    const area = $("#flash");
    area.prepend(box);
    while (area.children.length > 4) area.lastChild.remove();
    if (kind !== "error") setTimeout(() => box.remove(), 15000);
  }

  let busyCount = 0;
  function busy(text) {
    const box = $("#busy");
    busyCount += 1;
    const bar = $(".busy-bar", box);
    $(".busy-text", box).textContent = text;
    if (bar) bar.hidden = true;
    box.hidden = false;
    let done = false;
    return {
      // percent: a number shows the bar (the bytes done of those expected), else none
      update(more, percent) {
        if (done) return;
        $(".busy-text", box).textContent = more;
        if (bar) {
          bar.hidden = typeof percent !== "number";
          if (!bar.hidden) bar.value = percent;
        }
      },
      end() {
        if (done) return;
        done = true;
        if (bar) bar.hidden = true;
        busyCount -= 1;
        if (busyCount <= 0) { busyCount = 0; box.hidden = true; }
      },
    };
  }

  function showSecret(secret) {
    const box = $("#secret");
    $(".secret-label", box).textContent = secret.label.charAt(0).toUpperCase() + secret.label.slice(1);
    $(".secret-value", box).textContent = secret.value;
    box.hidden = false;
  }

  function connection(error) {
    const banner = $("#conn");
    if (!banner) return;
    banner.hidden = !error;
    banner.textContent = error || "";
  }

  // -- requests -------------------------------------------------------------

  async function readJson(response) {
    try { return await response.json(); } catch (e) { return {error: "HTTP " + response.status}; }
  }

  async function post(url, fields) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"},
        body: new URLSearchParams(fields),
        credentials: "same-origin",
      });
    } catch (e) {
      throw new Error("the front-end could not be reached: " + e.message);
    }
    const answer = await readJson(response);
    if (!response.ok || answer.error) throw new Error(answer.error || "HTTP " + response.status);
    return answer;
  }

  async function getJson(url) {
    const response = await fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
    const answer = await readJson(response);
    if (!response.ok || answer.error) throw new Error(answer.error || "HTTP " + response.status);
    return answer;
  }

  // -- parts that refresh on their own --------------------------------------

  const refreshing = new Set();
  async function refresh(element) {
    if (refreshing.has(element)) return;
    // A field being typed in is kept: by its id across the refresh, else by waiting.
    const typing = (field) => field && element.contains(field) && /^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName);
    if (typing(document.activeElement) && !document.activeElement.id) return;
    refreshing.add(element);
    try {
      const response = await fetch(element.dataset.src, {credentials: "same-origin"});
      if (response.status === 401) { window.location = "/login?ended=1"; return; }
      if (!response.ok) {
        connection((await readJson(response)).error);
        return;
      }
      const html = await response.text();
      if (html !== element.dataset.last) {
        const field = typing(document.activeElement) ? document.activeElement : null;
        const kept = field && {id: field.id, value: field.value, start: field.selectionStart, end: field.selectionEnd};
        element.innerHTML = html;
        const again = kept && document.getElementById(kept.id);
        if (again) {
          again.value = kept.value;
          again.focus();
          if (kept.start !== null && again.setSelectionRange) again.setSelectionRange(kept.start, kept.end);
        }
        element.dataset.last = html;
        applyToggles(element);
        fillCommands();
      }
      connection(null);
    } catch (e) {
      connection("The front-end could not be reached: " + e.message);
    } finally {
      refreshing.delete(element);
    }
  }

  function refreshAll(selectors) {
    for (const selector of selectors) {
      for (const element of $$(selector)) if (element.dataset.src) refresh(element);
    }
  }

  function startRefreshing() {
    for (const element of $$("[data-src]")) {
      const every = parseInt(element.dataset.every || "5000", 10);
      setInterval(() => { if (!document.hidden) refresh(element); }, every);
    }
  }

  function applyToggles(root) {
    for (const box of $$("[data-toggle-class]", root)) {
      const name = box.dataset.toggleClass;
      if (toggles.has(name)) box.checked = toggles.get(name);
      const target = $(box.dataset.target);
      if (target) target.classList.toggle(name, box.checked);
    }
  }

  // -- confirmation ---------------------------------------------------------

  function confirmWith(text) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  // -- watching long actions ------------------------------------------------

  // A watch ends when every node it waits for is RUNNING with its role, gone, or
  // FAILED, or the service in the state asked for; in any case after WATCH_LIMIT_MS.
  const WATCH_LIMIT_MS = 30 * 60 * 1000;
  const WAITING = {
    PENDING: "asked of the cloud",
    BOOTING: "waiting for its agent to register and its server to answer",
    RUNNING: "running",
    FAILED: "failed",
    TERMINATING: "being destroyed",
  };

  function describe(node) {
    if (node.state === "RUNNING" && node.role === "none") return "copying the master, then attaching as a slave";
    return WAITING[node.state] || node.state;
  }

  function nodeOutcomes(what, seen) {
    const byId = new Map(seen.nodes.map((n) => [n.id, n]));
    const outcome = {pending: [], lost: [], failed: [], done: []};
    for (const id of what.nodes) {
      const node = byId.get(id);
      if (what.until === "gone") {
        if (node) outcome.pending.push("node " + id + ": " + describe(node));
        else outcome.done.push(id);
      } else if (!node || node.state === "TERMINATED") outcome.lost.push(id);
      else if (node.state === "FAILED") outcome.failed.push(node);
      else if (node.state === "RUNNING" && (node.role !== "none" || seen.nodes.length === 1)) outcome.done.push(id);
      else outcome.pending.push("node " + id + " " + node.state + ": " + describe(node));
    }
    return outcome;
  }

  function nodes(ids) { return "Node" + (ids.length > 1 ? "s " : " ") + ids.join(", "); }

  async function watch(what, indicator) {
    const refreshNodes = () => refreshAll(["#nodes", "#summary", "#service-state"]);
    const until = Date.now() + WATCH_LIMIT_MS;
    let outcome = null;
    let waiting = "";
    let settled = false;
    while (!settled && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1000));
      let seen;
      try { seen = await getJson("/api/nodes"); } catch (e) {
        waiting = "waiting for the manager: " + e.message;
        indicator.update(waiting);
        continue;
      }
      refreshNodes();
      if (what.service) {
        waiting = "service " + seen.state + ": waiting for " + what.service;
        settled = seen.state === what.service;
      } else {
        outcome = nodeOutcomes(what, seen);
        waiting = outcome.pending.join("; ");
        settled = !outcome.pending.length;
      }
      indicator.update(waiting);
    }
    indicator.end();
    refreshNodes();
    if (!settled) {
      flash("error", "Stopped watching after " + WATCH_LIMIT_MS / 60000 + " min: " + waiting + " (see the nodes page)");
      return;
    }
    if (what.service) { flash("ok", "The service is " + what.service); return; }
    if (outcome.done.length) flash("ok", nodes(outcome.done) + (what.until === "gone" ? " removed" : " running"));
    if (outcome.lost.length) flash("error", nodes(outcome.lost) + " left the service (see its history)");
    for (const node of outcome.failed) flash("error", "Node " + node.id + " failed: " + (node.reason || "see its history"));
  }

  // A follow polls its url (JSON: settled, ok, text, percent) until the thing is settled: a
  // backup done or failed, a restored node holding its data or failed.
  async function follow(what, indicator) {
    const refreshParts = () => refreshAll(["#backups", "#nodes", "#service-state"]);
    const until = Date.now() + WATCH_LIMIT_MS;
    if (what.busy) indicator.update(what.busy);
    let last = null;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1500));
      try { last = await getJson(what.url); } catch (e) {
        indicator.update("waiting for the manager: " + e.message);
        continue;
      }
      indicator.update(last.text, last.percent);
      refreshParts();
      if (last.settled) break;
    }
    indicator.end();
    refreshParts();
    if (!last || !last.settled) {
      flash("error", "Stopped watching after " + WATCH_LIMIT_MS / 60000 + " min" + (last ? ": " + last.text : ""));
      return;
    }
    flash(last.ok ? "ok" : "error", last.text.charAt(0).toUpperCase() + last.text.slice(1));
  }

  // -- actions --------------------------------------------------------------

  function paramsOf(element) {
    const fields = {};
    for (const attribute of element.attributes) {
      if (attribute.name.startsWith("data-p-")) fields[attribute.name.slice(7)] = attribute.value;
    }
    return fields;
  }

  async function act(url, fields, options) {
    if (options.confirm && !(await confirmWith(options.confirm))) return false;
    const indicator = busy(options.busy || "Working…");
    let answer;
    try {
      answer = await post(url, fields);
    } catch (e) {
      indicator.end();
      flash("error", e.message);
      return false;
    }
    if (answer.message) flash("ok", answer.message.charAt(0).toUpperCase() + answer.message.slice(1));
    if (answer.secret) showSecret(answer.secret);
    if (options.refresh) refreshAll(options.refresh.split(","));
    if (answer.watch) watch(answer.watch, indicator);
    else if (answer.follow) follow(answer.follow, indicator);
    else { indicator.end(); refreshAll(["#nodes", "#summary", "#service-state", "#users", "#databases", "#timeline", "#backups"]); }
    return true;
  }

  function optionsOf(element) {
    return {confirm: element.dataset.confirm, busy: element.dataset.busy, refresh: element.dataset.refresh};
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.dataset.action) return;
    event.preventDefault();
    const typed = $$("[data-typed]", form);
    if (typed.length === 2 && !form.elements.generate.checked && typed[0].value !== typed[1].value) {
      flash("error", "The two passwords differ");
      return;
    }
    const button = $("button[type=submit]", form);
    if (button) button.disabled = true;
    const fields = Object.fromEntries(new FormData(form).entries());
    const done = await act(form.dataset.action, fields, optionsOf(form));
    if (button) button.disabled = false;
    if (done && !("keep" in form.dataset)) form.reset();
    if (done && "closeDialog" in form.dataset) form.closest("dialog").close();
  });

  document.addEventListener("click", (event) => {
    const target = event.target.closest("button, a");
    if (!target) return;
    if (target.dataset.action && target.tagName === "BUTTON") {
      act(target.dataset.action, paramsOf(target), optionsOf(target));
    } else if ("copy" in target.dataset) {
      copy(target);
    } else if (target.dataset.dismiss) {
      const box = $(target.dataset.dismiss);
      box.hidden = true;
      $(".secret-value", box).textContent = "";
    } else if (target.dataset.openDialog) {
      openDialog(target);
    } else if ("dismissDialog" in target.dataset) {
      target.closest("dialog").close();
    }
  });

  function openDialog(button) {
    const dialog = $(button.dataset.openDialog);
    const form = $("form", dialog);
    form.reset();
    for (const slot of $$("[data-fill]", dialog)) {
      const value = button.getAttribute("data-fill-" + slot.dataset.fill) || "";
      if (slot.tagName === "INPUT") slot.value = value; else slot.textContent = value;
    }
    syncPasswordFields(form);
    dialog.showModal();
  }

  function syncPasswordFields(root) {
    for (const box of $$("[data-generate]", root)) {
      for (const input of $$("[data-typed]", box.closest("fieldset"))) {
        input.disabled = box.checked;
        input.required = !box.checked;
      }
    }
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if ("generate" in target.dataset) syncPasswordFields(target.closest("form"));
    if (target.dataset.toggleClass) {
      toggles.set(target.dataset.toggleClass, target.checked);
      applyToggles(document);
    }
  });

  async function copy(button) {
    const code = $("code", button.closest(".copyline"));
    const text = code.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  // -- the connection command's user ----------------------------------------

  function shellWord(text) {
    return /^[A-Za-z0-9_.@%+=:,-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
  }

  let commandUser = null;
  function fillCommands() {
    const input = $("#cmd-user");
    if (!input) return;
    if (commandUser === null) commandUser = input.value;
    else input.value = commandUser;
    const user = shellWord(commandUser.trim() || "USER");
    for (const code of $$("[data-cmd]")) code.textContent = code.dataset.cmd.replace(/-u \S+ -p$/, "-u " + user + " -p");
  }

  document.addEventListener("input", (event) => {
    if (event.target.id === "cmd-user") { commandUser = event.target.value; fillCommands(); }
  });

  // -- charts ---------------------------------------------------------------

  const WINDOW_SECONDS = 300;
  const samples = []; // {at, nodes: [{id, role, qps, connections, lag}]}
  const SVG = "http://www.w3.org/2000/svg";
  const W = 360, H = 160, LEFT = 34, RIGHT = 6, TOP = 8, BOTTOM = 18;
  const MIN_SPAN = 30;

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function niceMax(value) {
    if (value <= 1) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function format(value) {
    if (value === null || value === undefined) return "–";
    return value >= 100 ? Math.round(value).toString() : (Math.round(value * 10) / 10).toString();
  }

  function drawChart(svg, key) {
    const now = samples.length ? samples[samples.length - 1].at : Date.now() / 1000;
    // The window fills the width: the last 5 minutes, or the time since the page opened.
    const span = samples.length ? Math.min(WINDOW_SECONDS, Math.max(MIN_SPAN, now - samples[0].at)) : WINDOW_SECONDS;
    const start = now - span;
    const lines = new Map(); // node id -> [[t, v] | null]
    let peak = 0;
    for (const sample of samples) {
      const present = new Set();
      for (const node of sample.nodes) {
        const value = node[key];
        if (!lines.has(node.id)) lines.set(node.id, []);
        present.add(node.id);
        if (value === null || value === undefined) { lines.get(node.id).push(null); continue; }
        lines.get(node.id).push([sample.at, value]);
        peak = Math.max(peak, value);
      }
      for (const [id, points] of lines) if (!present.has(id)) points.push(null);
    }
    const top = niceMax(peak);
    const x = (t) => LEFT + (t - start) / span * (W - LEFT - RIGHT);
    const y = (v) => H - BOTTOM - v / top * (H - TOP - BOTTOM);
    svg.replaceChildren();
    for (const fraction of [0, 0.5, 1]) {
      const value = top * fraction;
      svg.append(svgElement("line", {x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value), class: "grid"}));
      svg.append(svgElement("text", {x: LEFT - 6, y: y(value) + 4, class: "axis", "text-anchor": "end"}, format(value)));
    }
    const ago = span >= 60 ? "\u2212" + Math.round(span / 60) + " min" : "\u2212" + Math.round(span) + " s";
    svg.append(svgElement("text", {x: LEFT, y: H - 4, class: "axis"}, ago));
    svg.append(svgElement("text", {x: W - RIGHT, y: H - 4, class: "axis", "text-anchor": "end"}, "now"));
    const legend = $('[data-legend="' + key + '"]');
    legend.replaceChildren();
    let drawn = 0;
    for (const [id, points] of [...lines.entries()].sort((a, b) => a[0] - b[0])) {
      let path = "";
      let pen = false;
      for (const point of points) {
        if (point === null) { pen = false; continue; }
        path += (pen ? "L" : "M") + x(point[0]).toFixed(1) + " " + y(point[1]).toFixed(1) + " ";
        pen = true;
      }
      const last = [...points].reverse().find((p) => p !== null);
      if (!last) continue;
      drawn += 1;
      svg.append(svgElement("path", {d: path.trim(), class: "series c" + (id % 8), "data-node": id}));
      const item = document.createElement("span");
      item.className = "key";
      const swatch = document.createElement("i");
      swatch.className = "sw c" + (id % 8);
      item.append(swatch, "node " + id + " " + format(last[1]));
      legend.append(item);
    }
    if (!drawn) svg.append(svgElement("text", {x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle"},
      key === "lag" ? "no slaves replicating" : "no running nodes"));
  }

  async function pollMetrics(container) {
    if (document.hidden) return;
    try {
      const sample = await getJson(container.dataset.metrics);
      samples.push(sample);
      while (samples.length && samples[0].at < sample.at - WINDOW_SECONDS) samples.shift();
      connection(null);
    } catch (e) {
      connection(e.message);
    }
    for (const svg of $$("svg[data-chart]", container)) drawChart(svg, svg.dataset.chart);
  }

  function startCharts() {
    const container = $("[data-metrics]");
    if (!container) return;
    pollMetrics(container);
    setInterval(() => pollMetrics(container), parseInt(container.dataset.every || "2000", 10));
  }

  // -- upload ---------------------------------------------------------------

  function megabytes(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }

  function startUpload(form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = form.elements.file.files[0];
      if (!file) { flash("error", "Choose a dump file first"); return; }
      const query = new URLSearchParams({filename: file.name});
      const database = form.elements.database.value.trim();
      if (database) query.set("database", database);
      const bar = $("progress", form);
      const text = $(".progress-text", form);
      const button = $("button[type=submit]", form);
      $(".progress", form).hidden = false;
      bar.max = file.size || 1;
      bar.value = 0;
      button.disabled = true;
      const indicator = busy("Sending " + file.name + " (" + megabytes(file.size) + ") to the manager");
      const started = performance.now();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") + "?" + query.toString());
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        const total = e.lengthComputable ? e.total : file.size;
        const seconds = Math.max((performance.now() - started) / 1000, 0.001);
        bar.max = total || 1;
        bar.value = e.loaded;
        text.textContent = megabytes(e.loaded) + " of " + megabytes(total) + " · " +
          (e.loaded / 1e6 / seconds).toFixed(1) + " MB/s · " + Math.floor(e.loaded / (total || 1) * 100) + "%";
      };
      xhr.upload.onload = () => {
        bar.value = bar.max;
        indicator.update("All of " + file.name + " sent: waiting for the master to finish loading it");
      };
      const finish = (ok, message) => {
        indicator.end();
        button.disabled = false;
        flash(ok ? "ok" : "error", message);
        refreshAll(["#databases", "#timeline"]);
      };
      xhr.onload = () => {
        let answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {error: "HTTP " + xhr.status}; }
        if (xhr.status === 200 && !answer.error) {
          text.textContent += " · loaded";
          finish(true, "Loaded " + megabytes(answer.bytes || file.size) + " into node " +
            (answer.nodes || ["?"]).join(", ") + " in " + answer.seconds + " s");
        } else {
          finish(false, answer.error || "HTTP " + xhr.status);
        }
      };
      xhr.onerror = () => finish(false, "The upload broke off (the front-end could not be reached)");
      xhr.send(file);
    });
  }

  // -- start ----------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    startRefreshing();
    startCharts();
    fillCommands();
    syncPasswordFields(document);
    applyToggles(document);
    const upload = $("#upload");
    if (upload) startUpload(upload);
    for (const pre of $$("[data-scroll-end]")) pre.scrollTop = pre.scrollHeight;
  });
})();
