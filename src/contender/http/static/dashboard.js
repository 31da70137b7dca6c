// The contender dashboard: polls dashboard/data, draws it, and sends routing changes.
// No library and no other host: DOM text nodes (never innerHTML) and hand-drawn SVG.
"use strict";

(() => {
  const REFRESH_MS = 3000;
  const TOKEN_KEY = "contender.adminToken";
  const SVG = "http://www.w3.org/2000/svg";
  const ARMS = ["champion", "challenger"];
  const $ = (id) => document.getElementById(id);

  let timer = null;
  let inFlight = false;
  let again = false;
  let formDirty = false;
  let updates = 0;

  // ---- formatting --------------------------------------------------------------------

  const dash = "–";
  const fixed = (x, digits) => (x == null ? dash : x.toFixed(digits));
  const count = (x) => (x == null ? dash : x.toLocaleString("en-US"));
  const rate = (x) => (x == null ? dash : fixed(x, x < 10 ? 2 : 1));
  const ms = (x) => (x == null ? dash : fixed(x, x < 1 ? 3 : x < 100 ? 1 : 0));
  const pct = (x) => (x == null ? dash : `${(100 * x).toFixed(1)} %`);

  function ago(iso) {
    if (!iso) return dash;
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  const when = (iso) => (iso ? `${new Date(iso).toLocaleString()} (${ago(iso)})` : dash);

  function setText(id, text) {
    $(id).textContent = text;
  }

  function alertText(id, message) {
    const element = $(id);
    element.hidden = !message;
    element.textContent = message || "";
  }

  // ---- polling -----------------------------------------------------------------------

  function schedule(delayMs) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delayMs);
  }

  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      const response = await fetch("dashboard/data", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      alertText("load-error", "");
    } catch (error) {
      alertText("load-error", `could not load dashboard/data: ${error.message}`);
    } finally {
      inFlight = false;
      schedule(again ? 0 : REFRESH_MS);
      again = false;
    }
  }

  // ---- rendering ---------------------------------------------------------------------

  function render(data) {
    const live = data.live;
    setText("model", data.model);
    setText("updated", `updated ${new Date(live.at).toLocaleTimeString()}`);
    const workers = data.workers > 1 ? ` (one of ${data.workers} workers: its numbers only)` : "";
    setText("worker", `worker pid ${data.pid}${workers}`);
    renderSlots(data);
    renderRouting(data, live.window);
    renderTraffic(live);
    drawRates($("chart-rate"), live);
    drawLatency($("chart-latency"), live);
    renderBreaker(data.breaker);
    renderLogStore(data.log_store);
    renderReloads(data.reloads);
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  function renderSlots(data) {
    for (const arm of ARMS) {
      const slot = data[arm];
      setText(`${arm}-version`, slot ? slot.version : "none");
      setText(`${arm}-loaded`, slot ? when(slot.loaded_at) : dash);
    }
    setText("poll", `last registry poll ${ago(data.last_poll_at)}`);
    const problems = Object.entries(data.load_errors).map(([slot, error]) => `${slot}: ${error}`);
    if (data.last_poll_error) problems.unshift(`registry: ${data.last_poll_error}`);
    alertText("slot-errors", problems.join("\n"));
  }

  function renderRouting(data, totals) {
    const routing = data.routing;
    setText("testing", routing.testing ? "on" : "off");
    setText("weight-now", routing.challenger_weight.toFixed(2));
    setText("revision", routing.revision == null ? "from flags" : String(routing.revision));
    const served = totals.served_share.challenger;
    const expected = totals.expected_challenger_share;
    setText("served-share", pct(served));
    setText("expected-share", pct(expected));
    $("split-bar").style.width = `${100 * (served || 0)}%`;
    $("split-mark").style.left = `calc(${100 * (expected || 0)}% - 1px)`;
    alertText("routing-error", routing.error ? `routing tag ignored: ${routing.error}` : "");
    if (!formDirty) {
      $("weight").value = String(routing.challenger_weight);
      $("weight-range").value = String(routing.challenger_weight);
      $("testing-input").checked = routing.testing;
    }
    $("apply").disabled = !data.admin_enabled;
    if (!data.admin_enabled) {
      setText("routing-result", "routing changes are off: the service has no CONTENDER_ADMIN_TOKEN");
    }
  }

  function renderTraffic(live) {
    const totals = live.window;
    const minute = live.last_minute;
    for (const arm of ARMS) {
      const a = totals.arms[arm];
      const cells = $(`row-${arm}`).children;
      const values = [
        count(a.served),
        rate(a.served_per_s),
        rate(minute.arms[arm].served_per_s),
        count(a.predictions),
        ms(a.latency_ms.p50),
        ms(a.latency_ms.p99),
        a.errors ? `${count(a.errors)} (${pct(a.error_rate)})` : count(a.errors),
        count(a.skipped.overload),
        count(a.skipped.breaker_open),
      ];
      values.forEach((value, index) => {
        cells[index + 1].textContent = value;
      });
    }
    setText("requests-total", count(totals.requests));
    setText("requests-rate", rate(totals.requests_per_s));
    setText("fallbacks", count(totals.fallbacks));
    const agreement = totals.agreement;
    setText("agreement", pct(agreement.share));
    setText("agreement-rows", `(${count(agreement.agreed)} of ${count(agreement.rows)} rows)`);
  }

  function renderBreaker(breaker) {
    const state = $("breaker-state");
    state.textContent = breaker.state;
    state.className = breaker.state === "open" ? "bad" : "ok";
    setText("breaker-rate", pct(breaker.error_rate));
    setText("breaker-opened", breaker.opened_at ? `opened ${when(breaker.opened_at)}` : "");
  }

  function renderLogStore(store) {
    const healthy = $("log-healthy");
    healthy.textContent = store.healthy ? "healthy" : "not writing";
    healthy.className = store.healthy ? "ok" : "bad";
    setText("log-buffered", count(store.buffered));
    setText("log-spilled", count(store.spilled));
    alertText("log-error", store.last_error || "");
  }

  function row(cells, className) {
    const element = document.createElement("tr");
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      element.append(cell);
    }
    if (className) element.className = className;
    return element;
  }

  function renderReloads(reloads) {
    const rows = [];
    for (const event of reloads) {
      const at = `${new Date(event.at).toLocaleTimeString()} (${ago(event.at)})`;
      rows.push(row([
        at, event.slot, event.old_version ?? dash, event.new_version ?? dash,
        event.outcome, event.load_seconds.toFixed(2),
      ]));
      if (event.error) {
        const problem = row([`${event.error} (attempt ${event.attempt})`], "alert");
        problem.firstChild.colSpan = 6;
        rows.push(problem);
      }
    }
    if (rows.length === 0) {
      const empty = row(["none since this process started"], "meta");
      empty.firstChild.colSpan = 6;
      rows.push(empty);
    }
    $("reload-rows").replaceChildren(...rows);
  }

  // ---- charts ------------------------------------------------------------------------

  const BOX = { width: 560, height: 180, left: 46, right: 12, top: 22, bottom: 26 };

  function node(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text != null) element.textContent = text;
    return element;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // lines: [{values, className}]; x positions are seconds before now (<= 0).
  function drawChart(svg, xs, windowS, lines, legend, format) {
    const plotW = BOX.width - BOX.left - BOX.right;
    const plotH = BOX.height - BOX.top - BOX.bottom;
    const all = lines.flatMap((line) => line.values).filter((v) => v != null);
    const top = niceMax(Math.max(0, ...all) * 1.05);
    const x = (s) => BOX.left + plotW * (1 + s / windowS);
    const y = (v) => BOX.top + plotH * (1 - v / top);
    const parts = [];
    for (let i = 0; i <= 4; i += 1) {
      const value = (top * i) / 4;
      parts.push(node("line", { class: "grid", x1: BOX.left, x2: BOX.left + plotW, y1: y(value), y2: y(value) }));
      const label = value === 0 ? "0" : format(value);
      parts.push(node("text", { x: BOX.left - 6, y: y(value) + 4, "text-anchor": "end" }, label));
    }
    const spanMin = windowS / 60;
    const stepMin = spanMin <= 5 ? 1 : spanMin <= 10 ? 2 : 5;
    for (let minutes = spanMin; minutes >= 0; minutes -= stepMin) {
      const label = minutes === 0 ? "now" : `−${minutes} min`;
      const anchor = minutes === spanMin ? "start" : minutes === 0 ? "end" : "middle";
      parts.push(node("text", { x: x(-60 * minutes), y: BOX.height - 8, "text-anchor": anchor }, label));
    }
    const shown = (line) => ({ ...line, values: line.values.map((v, i) => (xs[i] >= -windowS ? v : null)) });
    for (const line of lines) parts.push(...path(shown(line), xs, x, y));
    let legendX = BOX.left;
    for (const [text, className] of legend) {
      if (className) {
        parts.push(node("rect", { x: legendX, y: 6, width: 10, height: 10, class: className }));
        legendX += 14;
      }
      parts.push(node("text", { x: legendX, y: 15 }, text));
      legendX += 6 * text.length + 18;
    }
    svg.replaceChildren(...parts);
  }

  // A polyline broken where values are null; a dot for a point with no neighbour.
  function path(line, xs, x, y) {
    const shapes = [];
    let d = "";
    line.values.forEach((value, i) => {
      if (value == null) return;
      const previous = i > 0 ? line.values[i - 1] : null;
      const next = i + 1 < line.values.length ? line.values[i + 1] : null;
      const px = x(xs[i]).toFixed(1);
      const py = y(value).toFixed(1);
      d += `${previous == null ? "M" : "L"}${px} ${py} `;
      if (previous == null && next == null) {
        shapes.push(node("circle", { cx: px, cy: py, r: 3, class: `series ${line.className}` }));
      }
    });
    if (d) shapes.unshift(node("path", { d, class: `series ${line.className}` }));
    return shapes;
  }

  // The chart's span: the whole window, or less while the process is younger than it
  // (whole minutes, two at least), so a young service's first minutes are not a sliver.
  function span(live) {
    const minutes = Math.ceil(live.window.covered_s / 60);
    return 60 * Math.min(live.window_s / 60, Math.max(2, minutes));
  }

  function drawRates(svg, live) {
    const series = live.series;
    const lines = ARMS.map((arm) => ({ values: series.served_per_s[arm], className: arm }));
    const legend = [["champion", "legend-champion"], ["challenger", "legend-challenger"]];
    drawChart(svg, series.end_s, span(live), lines, legend, (v) => rate(v));
  }

  function drawLatency(svg, live) {
    const series = live.series;
    const lines = ARMS.flatMap((arm) => [
      { values: series.p50_ms[arm], className: arm },
      { values: series.p99_ms[arm], className: `${arm} p99` },
    ]);
    const legend = [
      ["champion", "legend-champion"],
      ["challenger", "legend-challenger"],
      ["p50 solid or filled, p99 dashed or hollow", null],
    ];
    drawChart(svg, series.end_s, span(live), lines, legend, (v) => ms(v));
  }

  // ---- routing changes ---------------------------------------------------------------

  function setUpForm() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) $("token").value = token;
    const dirty = () => {
      formDirty = true;
    };
    $("weight-range").addEventListener("input", () => {
      $("weight").value = $("weight-range").value;
      dirty();
    });
    $("weight").addEventListener("input", () => {
      $("weight-range").value = $("weight").value;
      dirty();
    });
    $("testing-input").addEventListener("change", dirty);
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("token").value = "";
    });
    $("routing-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sendRouting();
    });
  }

  async function sendRouting() {
    const token = $("token").value.trim();
    // This tab only: gone when it closes, never sent anywhere but /admin/routing.
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    const weight = Number($("weight").value);
    if (!(weight >= 0 && weight <= 1)) {
      setText("routing-result", "the weight is a number from 0 to 1");
      return;
    }
    const body = { challenger_weight: weight, testing: $("testing-input").checked };
    setText("routing-result", "sending…");
    try {
      const response = await fetch("admin/routing", {
        method: "PUT",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        const testing = answer.testing ? "on" : "off";
        setText("routing-result",
          `applied: weight ${answer.challenger_weight}, testing ${testing}, revision ${answer.revision}`);
        formDirty = false;
        schedule(0);
      } else {
        setText("routing-result", `refused (${response.status}): ${answer.message || response.statusText}`);
      }
    } catch (error) {
      setText("routing-result", `not sent: ${error.message}`);
    }
  }

  setUpForm();
  refresh();
})();
