// segindex web page, video tracks: a filmstrip of the track's sampled frames (mask tinted, box
// drawn, from GET /tracks/{id}/frames/{n}/overlay.png) and the video itself (GET /videos/{id},
// range requests) played from the track's start to its end with the track's box drawn over it.
// Where the browser cannot play the video (its type or codec refused, a load error, no picture
// decoded), the player is hidden and the filmstrip remains alone.
"use strict";

const track = {
  data: null,       // GET /tracks/{id}
  frames: [],       // its sampled frames, in time order
  playable: false,
  raf: 0,
  watchdog: 0,      // a timer: the video must show a frame soon after its metadata
};

function formatTime(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "-";
  const tenths = Math.round(Math.max(0, seconds) * 10);
  const minutes = Math.floor(tenths / 600);
  const rest = tenths - minutes * 600;
  const secs = `${String(Math.floor(rest / 10)).padStart(2, "0")}.${rest % 10}`;
  return `${minutes}:${secs}`;
}

function frameAt(time) {
  // the last sampled frame shown at or before `time` (the box holds until the next sample)
  let found = null;
  for (const frame of track.frames) {
    if (frame.time_s <= time + 1e-3) found = frame; else break;
  }
  return found;
}

function drawBox() {
  const video = $("track-video");
  const canvas = $("track-box");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const d = track.data;
  if (!d || !track.playable) return;
  const t = video.currentTime;
  const inside = t >= d.start_s - 1e-3 && t <= d.end_s + 0.5;
  const frame = inside ? frameAt(t) : null;
  canvas.dataset.frame = frame ? String(frame.frame_index) : "";
  if (!frame) return;
  const [x0, y0, x1, y1] = frame.bbox;
  // sizes in video pixels: the canvas is scaled with the video
  const px = Math.max(6, Math.round(canvas.height / 16));
  g.lineWidth = Math.max(1, Math.round(canvas.height / 150));
  g.strokeStyle = "#ff2878";
  g.strokeRect(x0, y0, x1 - x0, y1 - y0);
  g.font = `${px}px system-ui, sans-serif`;
  const label = `${d.label} ${formatTime(frame.time_s)}`;
  const top = Math.max(0, y0 - px - 4);
  g.fillStyle = "rgba(0, 0, 0, 0.7)";
  g.fillRect(x0, top, g.measureText(label).width + 4, px + 4);
  g.fillStyle = "#fff";
  g.fillText(label, x0 + 2, top + px);
}

function tick() {
  const video = $("track-video");
  drawBox();
  if (track.data && !video.paused && video.currentTime >= track.data.end_s) {
    video.pause();  // the track is over: stop on its last frame
    $("player").dataset.state = "ended";
  }
  if ($("track-detail").open) track.raf = requestAnimationFrame(tick);
}

function playTrack() {
  const video = $("track-video");
  if (!track.playable || !track.data) return;
  video.currentTime = track.data.start_s;
  $("player").dataset.state = "playing";
  video.play().catch(() => unplayable());
}

// whether this browser may play a video of `mediaType`: an MP4 is nearly always H.264, which
// some builds (Debian's Chromium) lack although they read the container
function canPlay(video, mediaType) {
  if (!mediaType || video.canPlayType(mediaType) === "") return false;
  if (mediaType === "video/mp4" || mediaType === "video/quicktime") {
    return video.canPlayType(`${mediaType}; codecs="avc1.42E01E"`) !== "";
  }
  return true;
}

function unplayable() {
  clearTimeout(track.watchdog);
  const video = $("track-video");
  video.onerror = null;
  video.onloadedmetadata = null;
  video.pause();
  $("track-box").dataset.frame = "";
  track.playable = false;
  $("player").dataset.state = "unplayable";
  $("player").hidden = true;
  $("play-track").disabled = true;
  $("no-play").hidden = false;
}

function seekTo(frame) {
  document.querySelectorAll("#filmstrip button").forEach((b) =>
    b.setAttribute("aria-pressed", String(Number(b.dataset.frame) === frame.frame_index)));
  if (!track.playable) return;
  const video = $("track-video");
  video.pause();
  $("player").dataset.state = "paused";
  video.currentTime = frame.time_s;
}

async function openTrack(hit) {
  const dialog = $("track-detail");
  const video = $("track-video");
  $("track-title").textContent = "Track";
  $("track-info").textContent = "Loading…";
  $("filmstrip").replaceChildren();
  $("player").hidden = false;
  $("player").dataset.state = "loading";
  $("no-play").hidden = true;
  $("play-track").disabled = true;
  track.data = null;
  track.frames = [];
  clearTimeout(track.watchdog);
  video.onerror = null;
  video.onloadedmetadata = null;
  if (!dialog.open) dialog.showModal();
  const response = await fetch(`/tracks/${hit.track_id}`);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    $("track-info").textContent = `Error ${response.status}: ${data.error || "request failed"}`;
    return;
  }
  track.data = data;
  track.frames = data.frames;
  const name = data.video.path.split(/[\\/]/).pop();
  $("track-title").textContent = `${data.label} in ${name}`;
  $("track-info").textContent =
    `Track ${data.track_id}: ${formatTime(data.start_s)}–${formatTime(data.end_s)}, ` +
    `${data.n_frames} sampled frames, score ${data.score.toFixed(2)}`;
  for (const frame of data.frames) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.frame = frame.frame_index;
    button.setAttribute("aria-label", `Frame ${frame.frame_index} at ${formatTime(frame.time_s)}`);
    const img = document.createElement("img");
    img.src = `${frame.urls.overlay}?size=160`;
    img.alt = `${data.label} at ${formatTime(frame.time_s)} (mask tinted, box drawn)`;
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.textContent = formatTime(frame.time_s);
    button.append(img, caption);
    button.addEventListener("click", () => seekTo(frame));
    li.append(button);
    $("filmstrip").append(li);
  }
  // play the video where the browser can; otherwise keep the filmstrip only
  track.playable = canPlay(video, data.video.media_type);
  if (!track.playable) { unplayable(); return; }
  video.onerror = () => unplayable();
  video.onloadedmetadata = () => {
    // a container the browser reads but a picture it cannot decode: no size, or no frame soon
    if (!video.videoWidth || !video.videoHeight) { unplayable(); return; }
    clearTimeout(track.watchdog);
    track.watchdog = setTimeout(() => { if (video.readyState < 2) unplayable(); }, 5000);
    const canvas = $("track-box");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    $("play-track").disabled = false;
    playTrack();
  };
  video.src = data.video.url;
  cancelAnimationFrame(track.raf);
  track.raf = requestAnimationFrame(tick);
}

$("play-track").addEventListener("click", playTrack);
$("more-like-track").addEventListener("click", () => {
  if (!track.data) return;
  const id = track.data.track_id;
  $("track-detail").close();
  startSearch({ ...commonOptions(), similar_to_track: id }, null);
});
$("close-track").addEventListener("click", () => $("track-detail").close());
$("track-detail").addEventListener("close", () => {
  const video = $("track-video");
  clearTimeout(track.watchdog);
  video.onerror = null;
  video.pause();
  video.removeAttribute("src");
  video.load();
  cancelAnimationFrame(track.raf);
});
