// wavlm-live browser page: talk into the server from the microphone (a session of your
// own) or watch a stream: the server's own input, or any session by id. Plain JavaScript,
// no build step. Query options: ?mic=1 starts the microphone at once, ?watch=ID watches
// a session.
"use strict";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const view = {
  speakers: new Map(), // id -> {name, talk_time}
  status(text) { $("status").textContent = text; },
  error(text) {
    const line = document.createElement("div");
    line.textContent = text;
    $("errors").appendChild(line);
  },
  clear() {
    this.speakers.clear();
    $("captions").replaceChildren();
    $("partial").replaceChildren();
    $("speakers").replaceChildren();
    $("errors").replaceChildren();
  },
  color(id) {
    const n = id && /^S(\d+)$/.test(id) ? parseInt(id.slice(1), 10) - 1 : -1;
    return n >= 0 ? COLORS[n % COLORS.length] : "inherit";
  },
  label(id) {
    if (!id) return "";
    const s = this.speakers.get(id);
    return s && s.name ? s.name : id;
  },
  line(msg) {
    const li = document.createElement("li");
    li.className = msg.final ? "final" : "partial";
    li.dataset.speaker = msg.speaker || "";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = msg.start.toFixed(1);
    li.appendChild(time);
    if (msg.speaker) {
      const who = document.createElement("span");
      who.className = "who";
      who.style.color = this.color(msg.speaker);
      who.textContent = this.label(msg.speaker) + ":";
      li.appendChild(who);
    }
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = msg.text;
    li.appendChild(text);
    return li;
  },
  caption(msg) {
    if (msg.final) {
      $("partial").replaceChildren();
      if (msg.text) {
        const list = $("captions");
        list.appendChild(this.line(msg));
        list.scrollTop = list.scrollHeight;
      }
    } else {
      $("partial").replaceChildren(msg.text ? this.line(msg) : "");
    }
  },
  speaker(msg) {
    this.speakers.set(msg.id, { name: msg.name, talk_time: msg.talk_time });
    const list = $("speakers");
    let li = list.querySelector(`li[data-id="${msg.id}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = msg.id;
      list.appendChild(li);
    }
    li.style.color = this.color(msg.id);
    li.textContent = `${msg.id}${msg.name ? " (" + msg.name + ")" : ""}: ${msg.talk_time.toFixed(1)} s`;
  },
};

const app = {
  ws: null,
  hello: null,
  session: null,
  audio: null, // {ctx, stream, node}
  ended: false,

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/");
      ws.binaryType = "arraybuffer";
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === "hello") {
          this.hello = msg;
          resolve(msg);
        }
        this.handle(msg);
      };
      ws.onclose = (e) => {
        this.view_closed(e);
        reject(new Error(`connection closed (${e.code})`));
      };
      this.ws = ws;
    });
  },

  handle(msg) {
    switch (msg.type) {
      case "hello": {
        const tasks = msg.tasks.join(", ");
        view.status(`connected: ${tasks}${msg.demo ? " (demo models)" : ""}` +
                    (msg.input ? "; showing the server's own input" : ""));
        $("mic").disabled = !msg.sessions;
        $("watch").disabled = false;
        break;
      }
      case "started":
        this.session = msg.session;
        $("session").textContent = msg.session;
        view.status(`live: session ${msg.session} (${msg.sample_rate} Hz)`);
        break;
      case "subscribed":
        if (msg.session) view.status(`watching session ${msg.session}`);
        break;
      case "caption":
        view.caption(msg);
        break;
      case "speaker":
        view.speaker(msg);
        break;
      case "error":
        view.error(`${msg.fatal ? "fatal error" : "error"} (${msg.code}): ${msg.message}`);
        break;
      case "end":
        this.ended = true;
        view.status(`ended at ${msg.t.toFixed(1)} s`);
        break;
      default:
        break;
    }
  },

  view_closed(e) {
    view.status(`disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`);
    $("mic").disabled = true;
    $("stop").disabled = true;
    $("watch").disabled = true;
    this.stopAudio();
  },

  async startMic() {
    $("mic").disabled = true;
    try {
      // the audio graph first, so that no captured audio waits for the worklet to load
      let ctx;
      try {
        ctx = new AudioContext({ sampleRate: 16000 });
      } catch (err) {
        ctx = new AudioContext(); // the server resamples whatever rate the browser gives
      }
      await ctx.audioWorklet.addModule("/worklet.js");
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      const source = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, "pcm-sender", {
        processorOptions: { blockFrames: Math.round(ctx.sampleRate / 10) },
      });
      const mute = ctx.createGain();
      mute.gain.value = 0;
      source.connect(node).connect(mute).connect(ctx.destination);
      view.clear();
      this.ended = false;
      this.ws.send(JSON.stringify({ type: "start", sample_rate: Math.round(ctx.sampleRate), channels: 1,
                                    format: "pcm_s16le" }));
      node.port.onmessage = (e) => {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send(e.data);
      };
      this.audio = { ctx, stream, node };
      $("stop").disabled = false;
      await ctx.resume();
    } catch (err) {
      view.error(`microphone: ${err.message || err}`);
      $("mic").disabled = false;
    }
  },

  stopAudio() {
    if (!this.audio) return;
    const { ctx, stream, node } = this.audio;
    node.port.onmessage = null;
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    this.audio = null;
  },

  stop() {
    this.stopAudio();
    $("stop").disabled = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "stop" }));
  },

  watch(id) {
    if (!id) return;
    view.clear();
    this.ended = false;
    this.ws.send(JSON.stringify({ type: "subscribe", session: id }));
  },
};

window.wavlmLive = app;
$("mic").onclick = () => app.startMic();
$("stop").onclick = () => app.stop();
$("watch").onclick = () => app.watch($("watch-id").value.trim());

app.connect().then(() => {
  if (params.get("watch")) app.watch(params.get("watch"));
  else if (params.get("mic") === "1") app.startMic();
}).catch((err) => view.error(err.message));
