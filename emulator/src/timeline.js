// The one timeline drawing of afemu, for the dashboard (live) and for `afemu rehearse --html`:
// a band per host with the requests it got, stacked by app per time bucket (each app in a colour
// of its own, the same in every report and on the dashboard), the default error pages in red,
// the steps or events as labelled markers (a failing one in red), and an axis with times and its
// origin.
//
//   afemuTimeline({
//     from_ms, to_ms,           // the window
//     clock: "epoch" | "run",   // axis labels: wall-clock times, or ms since the run began
//     width,                    // in pixels
//     hosts: [{host, buckets: [{at_ms, apps: {app: n}}], errors: [{at_ms, n}]}],
//     bucket_ms,                // how long a bucket is
//     markers: [{at_ms, label, title, kind, failed}],
//   }) -> an <svg id="timeline"> element
"use strict";

function afemuColour(app) {
  // FNV-1a, spread round the colour wheel by the golden angle: names alike get hues apart.
  let h = 2166136261;
  for (const c of app) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  return `hsl(${Math.round((h % 1000) * 137.508) % 360} 60% 45%)`;
}

const AFEMU_ERROR_RED = "#d62728";

function afemuTimeline(model) {
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const left = 170, right = 20, band = 44, gap = 14, top = 40;
  const width = Math.max(400, model.width || 1000);
  const plot = width - left - right;
  const span = Math.max(1, model.to_ms - model.from_ms);
  const x = (ms) => left + (plot * Math.min(Math.max(ms - model.from_ms, 0), span)) / span;
  const bottom = top + model.hosts.length * (band + gap);
  const height = bottom + 52;
  const svg = make("svg", { id: "timeline", xmlns: ns, width, height, viewBox: `0 0 ${width} ${height}`,
    "font-family": "Helvetica, Arial, sans-serif", "font-size": "11" });
  const barWidth = Math.max(1, (plot * model.bucket_ms) / span - 0.5);
  const label = (ms) => (model.clock === "epoch" ? new Date(ms).toLocaleTimeString([], { hour12: false }) : `${Math.round(ms)} ms`);
  const apps = new Set();
  model.hosts.forEach((host, index) => {
    const y = top + index * (band + gap);
    const group = make("g", { class: "host", "data-host": host.host });
    group.append(make("text", { x: left - 8, y: y + band / 2 + 4, "text-anchor": "end" }, host.host));
    group.append(make("rect", { class: "band", x: left, y, width: plot, height: band, fill: "#f2f4f7", stroke: "#d5dae1" }));
    let peak = 1;
    for (const bucket of host.buckets) {
      peak = Math.max(peak, Object.values(bucket.apps).reduce((a, b) => a + b, 0));
    }
    let bars = 0;
    for (const bucket of host.buckets) {
      if (bucket.at_ms < model.from_ms || bucket.at_ms > model.to_ms) continue;
      let base = y + band;
      const stack = Object.entries(bucket.apps).sort(([a], [b]) => a.localeCompare(b));
      for (const [app, n] of stack) {
        apps.add(app);
        const h = ((band - 4) * n) / peak;
        const rect = make("rect", { class: "served", "data-app": app, x: x(bucket.at_ms), y: base - h, width: barWidth, height: h, fill: afemuColour(app) });
        rect.append(make("title", {}, `${app}: ${n} request${n === 1 ? "" : "s"}`));
        group.append(rect);
        base -= h;
        bars++;
      }
    }
    // Default error pages: red, across the whole band and past it, impossible to miss.
    let errors = 0;
    for (const error of host.errors || []) {
      if (error.at_ms < model.from_ms || error.at_ms > model.to_ms) continue;
      const mark = make("rect", { class: "error-mark", "data-count": error.n, x: x(error.at_ms) - 1, y: y - 4, width: 2, height: band + 8, fill: AFEMU_ERROR_RED });
      mark.append(make("title", {}, `${label(error.at_ms)}: ${error.n} default error page${error.n === 1 ? "" : "s"}`));
      group.append(mark);
      errors += error.n;
    }
    group.setAttribute("data-errors", errors);
    group.setAttribute("data-bars", bars);
    group.append(make("text", { x: left + plot - 3, y: y + 11, fill: "#555", "text-anchor": "end" }, `${peak} max`));
    svg.append(group);
  });
  // Markers: steps of a rehearsal, or the platform's events, labelled.
  model.markers.forEach((marker, n) => {
    const at = x(marker.at_ms);
    const colour = marker.failed ? AFEMU_ERROR_RED : marker.kind === "step" ? "#2a6fd0" : "#555";
    const group = make("g", { class: `${marker.kind}-marker${marker.failed ? " failed" : ""}`, "data-kind": marker.kind });
    group.append(make("line", { x1: at, y1: top - 10, x2: at, y2: bottom - gap + 4, stroke: colour, "stroke-width": marker.failed ? 2 : 1, "stroke-dasharray": marker.failed ? "" : "3,3" }));
    group.append(make("text", { x: at + 2, y: top - 12 - (n % 2) * 10, fill: colour }, marker.label));
    group.append(make("title", {}, marker.title));
    svg.append(group);
  });
  // The axis: its origin, its end, and times between.
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const ms = model.from_ms + (span * i) / ticks;
    const tx = x(ms);
    svg.append(make("line", { class: "axis-tick", x1: tx, y1: bottom - gap + 4, x2: tx, y2: bottom - gap + 8, stroke: "#999" }));
    svg.append(make("text", { class: "axis-label", x: tx, y: bottom + 6, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle", fill: "#555" }, label(ms)));
  }
  // The legend: each app in its colour, and the default error page.
  let lx = left;
  for (const app of [...apps].sort()) {
    const g = make("g", { class: "legend" });
    g.append(make("rect", { x: lx, y: bottom + 20, width: 12, height: 12, fill: afemuColour(app) }));
    g.append(make("text", { x: lx + 16, y: bottom + 30 }, app));
    svg.append(g);
    lx += Math.max(90, app.length * 7 + 30);
  }
  const g = make("g", { class: "legend" });
  g.append(make("rect", { x: lx, y: bottom + 20, width: 12, height: 12, fill: AFEMU_ERROR_RED }));
  g.append(make("text", { x: lx + 16, y: bottom + 30 }, "default error page"));
  svg.append(g);
  return svg;
}
