// The live view: polls the analytics service and draws each stream's latest frame with its tracks,
// lines, zones and counts on a <canvas>. The frame is the archived JPEG, fetched unchanged and decoded
// here; everything from the server is set as text (never parsed as HTML). No external code: the page
// works offline, under a Content-Security-Policy of 'self'.
//
// The registry's streams are listed with their state, and a stream of the registry can have its lines and
// zones edited on its frame: draw a line (two clicks) or a zone (clicks, then a click on its first point
// or Save), or Edit to drag a point or a whole region, or remove one; then Save: one PATCH of the control
// API, sent with the ETag it was read at, so a change made meanwhile elsewhere is refused instead of
// overwritten. A refusal is shown with the field it names.
//
// Hooks for tests: section[data-stream-id]; its canvas has data-seq (the frame drawn) and data-boxes
// (how many tracks were drawn on it); counts are li[data-line][data-direction][data-count] and
// li[data-zone][data-occupancy][data-entered]; [data-fps] and [data-latency-ms] hold the rate and latency.
// The registry's table has tr[data-registry-stream] with td[data-state]; a stream's editor has
// button[data-edit="edit" | "line" | "zone" | "save" | "discard"], input[data-region-name], p.edit-error with
// data-field (the field a refusal named) and data-saved once a save went through.
"use strict";

const POLL_MS = 500;
const REGISTRY_POLL_MS = 2000;
const HANDLE_PX = 12; // how near (in CSS pixels) a click must be to grab or close on a point
const COLORS = ["#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93", "#ff924c", "#52a675", "#c5ca30"];
const streamsRoot = document.getElementById("streams");
const statusLine = document.getElementById("status");
const sections = new Map(); // stream id -> its elements and what was last drawn
const registryRoot = document.getElementById("registry");
const registryStatus = document.getElementById("registry-status");
const registryRows = registryRoot.querySelector("tbody");
let registry = new Map(); // stream id -> {definition, status}, as last listed

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 401) {
    // The session (a cookie from the printed link) expired, or the service's token changed.
    throw new Error("not signed in: open the live view's link with its ?token= again");
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// A write to the control API: {ok, status, data, etag}; never throws on an HTTP error status.
async function send(method, url, body, headers) {
  const options = { method, headers: { ...(headers || {}) }, cache: "no-store" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null; // 204, or not JSON
  }
  return { ok: response.ok, status: response.status, data, etag: response.headers.get("ETag") };
}

function problemText(status, data) {
  const error = (data && data.error) || {};
  if (error.problems && error.problems.length) {
    return error.problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join("\n");
  }
  const message = error.message || `HTTP ${status}`;
  return error.field ? `${error.field}: ${message}` : message;
}

function sectionFor(streamId) {
  let entry = sections.get(streamId);
  if (entry) return entry;
  const section = element("section", "stream");
  section.dataset.streamId = streamId;
  const canvas = element("canvas");
  canvas.width = 640;
  canvas.height = 360;
  canvas.dataset.seq = "";
  canvas.dataset.boxes = "0";
  const stats = element("p", "stats");
  const seq = element("span", "seq");
  const fps = element("span", "fps");
  const latency = element("span", "latency");
  fps.dataset.fps = "";
  latency.dataset.latencyMs = "";
  stats.append(seq, fps, latency);
  const counts = element("div", "counts");
  const lines = element("ul", "lines");
  const zones = element("ul", "zones");
  const linesBox = element("div");
  const zonesBox = element("div");
  linesBox.append(element("h3", "", "Lines"), lines);
  zonesBox.append(element("h3", "", "Zones"), zones);
  counts.append(linesBox, zonesBox);
  const editor = makeEditor(streamId);
  section.append(element("h2", "", streamId), canvas, editor.bar, editor.error, stats, counts);
  streamsRoot.append(section);
  entry = { streamId, section, canvas, seq, fps, latency, lines, zones, drawn: null, busy: false };
  entry.editor = editor;
  entry.latest = null; // the last /latest answer drawn
  entry.image = null; // its frame, kept to draw edits on
  entry.draft = null; // the regions being edited: {lines, zones, etag, drawing, drag}
  editor.bar.hidden = !registry.has(streamId);
  sections.set(streamId, entry);
  bindEditor(entry);
  return entry;
}

// --- the region editor ---------------------------------------------------------------------------

function makeEditor(streamId) {
  const bar = element("div", "editor");
  const button = (action, text) => {
    const b = element("button", "", text);
    b.type = "button";
    b.dataset.edit = action;
    return b;
  };
  const name = element("input");
  name.dataset.regionName = "";
  name.placeholder = "name";
  name.setAttribute("aria-label", `name of the new line or zone of ${streamId}`);
  const hint = element("span", "hint");
  const list = element("ul", "regions");
  const buttons = {
    edit: button("edit", "Edit"),
    line: button("line", "Draw line"),
    zone: button("zone", "Draw zone"),
    save: button("save", "Save"),
    discard: button("discard", "Discard"),
  };
  bar.append(buttons.edit, buttons.line, buttons.zone, name, buttons.save, buttons.discard, hint, list);
  const error = element("p", "edit-error");
  return { bar, buttons, name, hint, list, error };
}

function round(v) {
  return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
}

function pointAt(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  return [round((event.clientX - rect.left) / rect.width), round((event.clientY - rect.top) / rect.height)];
}

// Distance in CSS pixels between two normalized points on this canvas.
function pixels(canvas, a, b) {
  const rect = canvas.getBoundingClientRect();
  return Math.hypot((a[0] - b[0]) * rect.width, (a[1] - b[1]) * rect.height);
}

function inside(point, polygon) {
  let found = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > point[1] !== yj > point[1] && point[0] < ((xj - xi) * (point[1] - yi)) / (yj - yi) + xi) found = !found;
  }
  return found;
}

function nearSegment(canvas, p, a, b) {
  const rect = canvas.getBoundingClientRect();
  const [px, py, ax, ay, bx, by] = [p[0] * rect.width, p[1] * rect.height, a[0] * rect.width, a[1] * rect.height,
    b[0] * rect.width, b[1] * rect.height];
  const length2 = (bx - ax) ** 2 + (by - ay) ** 2 || 1;
  const t = Math.max(0, Math.min(1, ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / length2));
  return Math.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay))) <= HANDLE_PX;
}

function setError(entry, text, field) {
  const error = entry.editor.error;
  error.textContent = text || "";
  error.dataset.field = field || "";
  if (text) delete error.dataset.saved;
}

function freeName(draft, kind) {
  const taken = new Set([...draft.lines, ...draft.zones].map((r) => r.name));
  let n = 1;
  while (taken.has(`${kind}-${n}`)) n += 1;
  return `${kind}-${n}`;
}

async function startDraft(entry) {
  if (entry.draft) return entry.draft;
  const answer = await send("GET", `/api/registry/streams/${encodeURIComponent(entry.streamId)}`);
  if (!answer.ok) {
    setError(entry, problemText(answer.status, answer.data), answer.data?.error?.field);
    return null;
  }
  const definition = answer.data.definition;
  entry.draft = {
    lines: definition.lines.map((l) => ({ name: l.name, start: [...l.start], end: [...l.end] })),
    zones: definition.zones.map((z) => ({ name: z.name, polygon: z.polygon.map((p) => [...p]) })),
    etag: answer.etag,
    drawing: null,
    drag: null,
  };
  return entry.draft;
}

function finishDrawing(entry) {
  const draft = entry.draft;
  const drawing = draft && draft.drawing;
  if (!drawing) return true;
  if (drawing.kind === "zone" && drawing.points.length >= 3) {
    draft.zones.push({ name: drawing.name, polygon: drawing.points });
  } else if (drawing.kind === "line" && drawing.points.length === 2) {
    draft.lines.push({ name: drawing.name, start: drawing.points[0], end: drawing.points[1] });
  } else {
    setError(entry, `${drawing.name}: not finished (a line needs 2 points, a zone at least 3)`, "");
    return false;
  }
  draft.drawing = null;
  return true;
}

function renderEditor(entry) {
  const { buttons, hint, list } = entry.editor;
  const draft = entry.draft;
  const drawing = draft && draft.drawing;
  buttons.edit.setAttribute("aria-pressed", String(Boolean(draft)));
  buttons.line.setAttribute("aria-pressed", String(drawing?.kind === "line"));
  buttons.zone.setAttribute("aria-pressed", String(drawing?.kind === "zone"));
  buttons.save.disabled = buttons.discard.disabled = !draft;
  entry.canvas.classList.toggle("editing", Boolean(draft));
  if (drawing) {
    hint.textContent = drawing.kind === "line"
      ? `click the line's start, then its end ("in" is to the right walking from start to end)`
      : `click the zone's corners; click its first corner again (or Save) to close it`;
  } else {
    hint.textContent = draft ? "drag a point or a region to move it; Save when done" : "";
  }
  const items = [];
  for (const [kind, regions] of [["line", draft ? draft.lines : []], ["zone", draft ? draft.zones : []]]) {
    regions.forEach((region, index) => {
      const item = element("li", "", `${kind} ${region.name} `);
      const remove = element("button", "", "remove");
      remove.type = "button";
      remove.dataset.remove = `${kind}:${region.name}`;
      remove.addEventListener("click", () => {
        regions.splice(index, 1);
        renderEditor(entry);
        paint(entry);
      });
      item.append(remove);
      items.push(item);
    });
  }
  list.replaceChildren(...items);
}

async function save(entry) {
  if (!entry.draft || !finishDrawing(entry)) return;
  const { lines, zones, etag } = entry.draft;
  const answer = await send("PATCH", `/api/registry/streams/${encodeURIComponent(entry.streamId)}`,
    { lines, zones }, etag ? { "If-Match": etag } : {});
  if (!answer.ok) {
    let text = problemText(answer.status, answer.data);
    if (answer.status === 412) text += " (Discard, then edit the current regions)";
    setError(entry, text, answer.data?.error?.field);
    renderEditor(entry);
    paint(entry);
    return;
  }
  entry.draft = null;
  setError(entry, "", "");
  entry.editor.error.dataset.saved = "true";
  entry.drawn = null; // redraw with the saved regions at the next poll
  renderEditor(entry);
  entry.editor.hint.textContent = "saved: counted from the stream's next frame";
}

function hit(entry, point) {
  const { canvas, draft } = entry;
  for (const zone of draft.zones) {
    const i = zone.polygon.findIndex((p) => pixels(canvas, p, point) <= HANDLE_PX);
    if (i >= 0) return { points: [zone.polygon[i]] };
  }
  for (const line of draft.lines) {
    if (pixels(canvas, line.start, point) <= HANDLE_PX) return { points: [line.start] };
    if (pixels(canvas, line.end, point) <= HANDLE_PX) return { points: [line.end] };
  }
  for (const line of draft.lines) {
    if (nearSegment(canvas, point, line.start, line.end)) return { points: [line.start, line.end] };
  }
  for (const zone of draft.zones) {
    if (inside(point, zone.polygon)) return { points: zone.polygon };
  }
  return null;
}

function bindEditor(entry) {
  const { canvas, editor } = entry;
  const beginDrawing = async (kind) => {
    const draft = await startDraft(entry);
    if (!draft || !finishDrawing(entry)) return;
    const name = editor.name.value.trim() || freeName(draft, kind);
    draft.drawing = { kind, name, points: [] };
    editor.name.value = "";
    setError(entry, "", "");
    renderEditor(entry);
  };
  editor.buttons.edit.addEventListener("click", async () => {
    if (await startDraft(entry)) setError(entry, "", "");
    renderEditor(entry);
    paint(entry);
  });
  editor.buttons.line.addEventListener("click", () => beginDrawing("line"));
  editor.buttons.zone.addEventListener("click", () => beginDrawing("zone"));
  editor.buttons.save.addEventListener("click", () => save(entry));
  editor.buttons.discard.addEventListener("click", () => {
    entry.draft = null;
    setError(entry, "", "");
    renderEditor(entry);
    paint(entry);
  });
  canvas.addEventListener("pointerdown", (event) => {
    const draft = entry.draft;
    if (!draft) return;
    const point = pointAt(canvas, event);
    const drawing = draft.drawing;
    if (drawing) {
      const closes = drawing.kind === "zone" && drawing.points.length >= 3
        && pixels(canvas, drawing.points[0], point) <= HANDLE_PX;
      if (!closes) drawing.points.push(point);
      if (closes || (drawing.kind === "line" && drawing.points.length === 2)) finishDrawing(entry);
      renderEditor(entry);
      paint(entry);
      return;
    }
    const grabbed = hit(entry, point);
    if (!grabbed) return;
    draft.drag = { points: grabbed.points, from: point };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    const drag = entry.draft && entry.draft.drag;
    if (!drag) return;
    const point = pointAt(canvas, event);
    // Moved as one: a region never goes past the frame's edge (nor loses its shape there).
    let dx = point[0] - drag.from[0];
    let dy = point[1] - drag.from[1];
    for (const p of drag.points) {
      dx = Math.min(Math.max(dx, -p[0]), 1 - p[0]);
      dy = Math.min(Math.max(dy, -p[1]), 1 - p[1]);
    }
    for (const p of drag.points) {
      p[0] = round(p[0] + dx);
      p[1] = round(p[1] + dy);
    }
    drag.from = [drag.from[0] + dx, drag.from[1] + dy];
    paint(entry);
  });
  const drop = () => {
    if (entry.draft) entry.draft.drag = null;
  };
  canvas.addEventListener("pointerup", drop);
  canvas.addEventListener("pointercancel", drop);
}

function color(trackId) {
  return COLORS[Math.abs(trackId) % COLORS.length];
}

function sum(byLabel) {
  return Object.values(byLabel || {}).reduce((a, b) => a + b, 0);
}

function describe(byLabel) {
  return Object.entries(byLabel || {})
    .filter(([, n]) => n > 0)
    .map(([label, n]) => `${label} ${n}`)
    .join(", ");
}

async function frameImage(url) {
  if (!url) return null;
  try {
    const response = await fetch(url);
    if (!response.ok) return null; // not archived (yet): boxes are drawn on a blank frame
    return await createImageBitmap(await response.blob());
  } catch (error) {
    return null;
  }
}

function drawRegions(ctx, latest, regions) {
  const w = latest.width;
  const h = latest.height;
  ctx.lineWidth = Math.max(2, w / 320);
  ctx.font = `bold ${Math.max(14, Math.round(w / 40))}px sans-serif`;
  for (const zone of regions.zones) {
    ctx.beginPath();
    zone.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
    ctx.closePath();
    ctx.fillStyle = "rgba(80, 160, 255, 0.18)";
    ctx.fill();
    ctx.strokeStyle = "rgba(80, 160, 255, 0.9)";
    ctx.stroke();
    const [x0, y0] = zone.polygon[0];
    ctx.fillStyle = "rgba(80, 160, 255, 1)";
    ctx.fillText(zone.name, x0 * w + 6, y0 * h + 20);
  }
  for (const line of regions.lines) {
    const [x1, y1] = [line.start[0] * w, line.start[1] * h];
    const [x2, y2] = [line.end[0] * w, line.end[1] * h];
    ctx.strokeStyle = "#ffffff";
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    ctx.stroke();
    // "in" is towards the right-hand side walking from start to end (image y points down).
    const length = Math.hypot(x2 - x1, y2 - y1) || 1;
    const [nx, ny] = [-(y2 - y1) / length, (x2 - x1) / length];
    const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
    const arrow = Math.max(16, w / 30);
    ctx.beginPath();
    ctx.moveTo(mx, my);
    ctx.lineTo(mx + nx * arrow, my + ny * arrow);
    ctx.stroke();
    ctx.fillStyle = "#ffffff";
    ctx.fillText(`${line.name} (in)`, mx + nx * arrow + 4, my + ny * arrow + 4);
  }
}

function drawTracks(ctx, latest) {
  const w = latest.width;
  ctx.lineWidth = Math.max(2, w / 400);
  ctx.font = `${Math.max(13, Math.round(w / 48))}px sans-serif`;
  for (const track of latest.tracks) {
    const [x1, y1, x2, y2] = track.box;
    const c = color(track.track_id);
    ctx.strokeStyle = c;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `#${track.track_id} ${track.label} ${Math.round(track.score * 100)}%`;
    const height = Math.max(16, Math.round(w / 38));
    ctx.fillStyle = c;
    ctx.fillRect(x1, Math.max(0, y1 - height), ctx.measureText(text).width + 6, height);
    ctx.fillStyle = "#000000";
    ctx.fillText(text, x1 + 3, Math.max(height, y1) - 4);
  }
}

function renderCounts(entry, latest) {
  const lineItems = [];
  for (const line of latest.lines) {
    const counts = (latest.counts.lines || {})[line.name] || {};
    for (const direction of ["in", "out"]) {
      const byLabel = counts[direction] || {};
      const item = element("li");
      item.dataset.line = line.name;
      item.dataset.direction = direction;
      item.dataset.count = String(sum(byLabel));
      item.append(`${line.name} ${direction}: `, element("span", "n", String(sum(byLabel))), " ");
      item.append(element("span", "by-label", describe(byLabel)));
      lineItems.push(item);
    }
  }
  entry.lines.replaceChildren(...lineItems);
  const zoneItems = [];
  for (const zone of latest.zones) {
    const counts = (latest.counts.zones || {})[zone.name] || {};
    const item = element("li");
    item.dataset.zone = zone.name;
    item.dataset.occupancy = String(sum(counts.occupancy));
    item.dataset.entered = String(sum(counts.entered));
    item.append(`${zone.name}: `, element("span", "n", String(sum(counts.occupancy))), " inside, ");
    item.append(element("span", "n", String(sum(counts.entered))), " entered ");
    item.append(element("span", "by-label", describe(counts.occupancy)));
    zoneItems.push(item);
  }
  entry.zones.replaceChildren(...zoneItems);
}

function drawDrawing(ctx, latest, drawing) {
  const [w, h] = [latest.width, latest.height];
  ctx.strokeStyle = "#ffca3a";
  ctx.fillStyle = "#ffca3a";
  ctx.setLineDash([8, 6]);
  ctx.beginPath();
  drawing.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
  ctx.stroke();
  ctx.setLineDash([]);
  for (const [x, y] of drawing.points) ctx.fillRect(x * w - 4, y * h - 4, 8, 8);
}

// The frame, the regions (the draft's while editing), the tracks and a drawing in progress.
function paint(entry) {
  const latest = entry.latest;
  if (!latest) return;
  const canvas = entry.canvas;
  if (canvas.width !== latest.width || canvas.height !== latest.height) {
    canvas.width = latest.width;
    canvas.height = latest.height;
  }
  const ctx = canvas.getContext("2d");
  if (entry.image) {
    ctx.drawImage(entry.image, 0, 0, latest.width, latest.height);
  } else {
    ctx.fillStyle = "#202020";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  drawRegions(ctx, latest, entry.draft || latest);
  drawTracks(ctx, latest);
  if (entry.draft && entry.draft.drawing) drawDrawing(ctx, latest, entry.draft.drawing);
}

async function refresh(entry, streamId) {
  const latest = await getJSON(`/api/streams/${encodeURIComponent(streamId)}/latest`);
  const image = await frameImage(latest.frame_url);
  if (entry.image) entry.image.close();
  entry.image = image;
  entry.latest = latest;
  const canvas = entry.canvas;
  paint(entry);
  renderCounts(entry, latest);
  entry.seq.textContent = `frame ${latest.seq}`;
  entry.fps.textContent = latest.fps === null ? "- fps" : `${latest.fps.toFixed(1)} fps`;
  entry.fps.dataset.fps = latest.fps === null ? "" : String(latest.fps);
  entry.latency.textContent = `${latest.latency_ms.toFixed(0)} ms capture to result`;
  entry.latency.dataset.latencyMs = String(latest.latency_ms);
  canvas.dataset.frame = image ? "archived" : "missing";
  canvas.dataset.boxes = String(latest.tracks.length);
  canvas.dataset.seq = String(latest.seq); // last: a test that sees the new seq sees the whole frame
  entry.drawn = latest.seq;
}

async function tick() {
  try {
    const { streams } = await getJSON("/api/streams");
    const listed = new Set(streams.map((s) => s.stream_id));
    for (const [streamId, entry] of sections) {
      if (!listed.has(streamId)) {
        if (entry.image) entry.image.close();
        entry.section.remove(); // moved to another replica, or forgotten
        sections.delete(streamId);
      }
    }
    document.getElementById("empty").hidden = streams.length > 0;
    await Promise.all(
      streams.map(async (summary) => {
        const entry = sectionFor(summary.stream_id);
        if (entry.drawn === summary.seq || entry.busy) return;
        entry.busy = true;
        try {
          await refresh(entry, summary.stream_id);
        } finally {
          entry.busy = false;
        }
      }),
    );
    statusLine.dataset.state = "ok";
    statusLine.textContent = `${streams.length} stream(s), updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    statusLine.dataset.state = "error";
    statusLine.textContent = `cannot reach the service: ${error.message}`;
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

// --- the registry's streams ----------------------------------------------------------------------

function age(seconds) {
  return seconds === null || seconds === undefined ? "-" : `${seconds.toFixed(1)} s ago`;
}

function registryRow(stream) {
  const { definition, status } = stream;
  const row = element("tr");
  row.dataset.registryStream = definition.id;
  const state = element("td", "", definition.enabled ? status.state : "disabled");
  state.dataset.state = state.textContent;
  state.title = status.reported_by === "publisher" ? `reported by ${status.pod}` : "seen in the results here";
  const fps = element("td", "", status.fps === null ? "-" : status.fps.toFixed(1));
  const toggle = element("button", "", definition.enabled ? "Disable" : "Enable");
  toggle.type = "button";
  toggle.dataset.action = definition.enabled ? "disable" : "enable";
  toggle.addEventListener("click", async () => {
    const action = toggle.dataset.action;
    const answer = await send("POST", `/api/registry/streams/${encodeURIComponent(definition.id)}:${action}`);
    registryStatus.textContent = answer.ok ? `${definition.id}: ${action}d` : problemText(answer.status, answer.data);
    await pollRegistry(false);
  });
  const actions = element("td");
  actions.append(toggle);
  row.append(element("td", "", definition.id), state, fps, element("td", "", age(status.last_frame_age_s)),
    element("td", "", status.last_error || "-"), actions);
  return row;
}

async function pollRegistry(again = true) {
  try {
    const response = await fetch("/api/registry/streams", { cache: "no-store" });
    const data = await response.json().catch(() => null);
    if (response.status === 404) {
      registryRoot.hidden = true; // this service does not follow a registry
      registry = new Map();
      return;
    }
    registryRoot.hidden = false;
    if (!response.ok) {
      registryStatus.textContent = `the registry is unavailable: ${problemText(response.status, data)}`;
      return;
    }
    registry = new Map(data.streams.map((s) => [s.definition.id, s]));
    registryRows.replaceChildren(...data.streams.map(registryRow));
    registryStatus.textContent = data.regions_from === "file"
      ? "The registry holds no stream: lines and zones come from the service's streams file."
      : "";
    for (const [streamId, entry] of sections) entry.editor.bar.hidden = !registry.has(streamId);
  } catch (error) {
    registryStatus.textContent = `cannot reach the registry: ${error.message}`;
  } finally {
    if (again) setTimeout(pollRegistry, REGISTRY_POLL_MS);
  }
}

pollRegistry();
tick();
