// The live view: polls the analytics service and draws each stream's latest frame with its tracks,
// lines, zones and counts on a <canvas>. The frame is the archived JPEG, fetched unchanged and decoded
// here; everything from the server is set as text (never parsed as HTML). No external code: the page
// works offline, under a Content-Security-Policy of 'self'.
//
// Hooks for tests: section[data-stream-id]; its canvas has data-seq (the frame drawn) and data-boxes
// (how many tracks were drawn on it); counts are li[data-line][data-direction][data-count] and
// li[data-zone][data-occupancy][data-entered]; [data-fps] and [data-latency-ms] hold the rate and latency.
"use strict";

const POLL_MS = 500;
const COLORS = ["#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93", "#ff924c", "#52a675", "#c5ca30"];
const streamsRoot = document.getElementById("streams");
const statusLine = document.getElementById("status");
const sections = new Map(); // stream id -> its elements and what was last drawn

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
  section.append(element("h2", "", streamId), canvas, stats, counts);
  streamsRoot.append(section);
  entry = { section, canvas, seq, fps, latency, lines, zones, drawn: null, busy: false };
  sections.set(streamId, entry);
  return entry;
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

function drawRegions(ctx, latest) {
  const w = latest.width;
  const h = latest.height;
  ctx.lineWidth = Math.max(2, w / 320);
  ctx.font = `bold ${Math.max(14, Math.round(w / 40))}px sans-serif`;
  for (const zone of latest.zones) {
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
  for (const line of latest.lines) {
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

async function refresh(entry, streamId) {
  const latest = await getJSON(`/api/streams/${encodeURIComponent(streamId)}/latest`);
  const image = await frameImage(latest.frame_url);
  const canvas = entry.canvas;
  if (canvas.width !== latest.width || canvas.height !== latest.height) {
    canvas.width = latest.width;
    canvas.height = latest.height;
  }
  const ctx = canvas.getContext("2d");
  if (image) {
    ctx.drawImage(image, 0, 0, latest.width, latest.height);
    image.close();
  } else {
    ctx.fillStyle = "#202020";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  drawRegions(ctx, latest);
  drawTracks(ctx, latest);
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

tick();
