// What the canvas editors (Manual extraction, Mask editor) share: a zoomable view of one image, pointer
// positions, keys matched by their place on the keyboard (event.code, so every layout works), key tables.
import { h } from "./api.js";

// Image pixels -> canvas CSS pixels: X = ox + (x + 0.5) * scale (integer image coordinates are pixel
// centres, as OpenCV and the landmark models count them). The canvas's backing store follows
// devicePixelRatio so lines stay sharp; the view is published on the canvas's data attributes
// (data-scale, data-ox, data-oy) for the browser tests.
export class View {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.scale = 1; this.ox = 0; this.oy = 0;
    this.width = 0; this.height = 0;   // CSS size of the canvas
    this.imageW = 0; this.imageH = 0;
  }

  // match the backing store to the element's size; true when it changed
  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width)), hgt = Math.max(1, Math.round(r.height));
    if (w === this.width && hgt === this.height && this.canvas.width === Math.round(w * dpr)) return false;
    this.width = w; this.height = hgt;
    this.canvas.width = Math.round(w * dpr); this.canvas.height = Math.round(hgt * dpr);
    return true;
  }

  // the whole image, centred, with `pad` CSS pixels around it, left of `right` pixels (where the help is)
  fit(imageW, imageH, pad = 12, right = 0) {
    this.imageW = imageW; this.imageH = imageH;
    const room = this.width - right > this.width / 2 ? this.width - right : this.width;
    this.scale = Math.max(1e-3, Math.min((room - 2 * pad) / imageW, (this.height - 2 * pad) / imageH));
    this.ox = (room - imageW * this.scale) / 2;
    this.oy = (this.height - imageH * this.scale) / 2;
    this.publish();
  }

  zoomAt(factor, X = this.width / 2, Y = this.height / 2) {
    const [x, y] = this.toImage(X, Y);
    this.scale = Math.min(64, Math.max(0.05, this.scale * factor));
    this.ox = X - (x + 0.5) * this.scale;
    this.oy = Y - (y + 0.5) * this.scale;
    this.publish();
  }

  panBy(dX, dY) { this.ox += dX; this.oy += dY; this.publish(); }

  toScreen(x, y) { return [this.ox + (x + 0.5) * this.scale, this.oy + (y + 0.5) * this.scale]; }
  toImage(X, Y) { return [(X - this.ox) / this.scale - 0.5, (Y - this.oy) / this.scale - 0.5]; }

  publish() {
    const d = this.canvas.dataset;
    d.scale = String(this.scale); d.ox = String(this.ox); d.oy = String(this.oy);
  }

  // a cleared context drawing in CSS pixels
  begin() {
    const dpr = window.devicePixelRatio || 1;
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    return ctx;
  }

  drawImage(img) {
    const ctx = this.ctx;
    ctx.imageSmoothingEnabled = this.scale < 3;  // zoomed in far: show the pixels as they are
    ctx.drawImage(img, this.ox, this.oy, this.imageW * this.scale, this.imageH * this.scale);
  }
}

// how much of the canvas's right side the help box covers (0 when hidden): fit() keeps the image left of it
export function helpWidth(help) {
  return help && !help.hidden ? help.getBoundingClientRect().width + 20 : 0;
}

// the pointer's position in the canvas, CSS pixels
export function pointer(e, canvas) {
  const r = canvas.getBoundingClientRect();
  return [e.clientX - r.left, e.clientY - r.top];
}

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src}`));
    img.src = src;
  });
}

// keys typed into a form field are the field's, not the editor's
export function typing(e) {
  const t = e.target;
  return t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName));
}

// [[keys, what], ...] -> a two-column table; each space-separated key becomes a <kbd>; "or" and "/" stay
// text, and lower-case words (mouse, wheel, click, drag) are actions shown in italics
export function keyTable(rows) {
  const key = (k) => (["or", "/"].includes(k) ? k : /^[a-z][a-z-]+$/.test(k) ? h("em", {}, k) : h("kbd", {}, k));
  return h("table", { class: "keys" }, h("tbody", {}, rows.map(([keys, what]) =>
    h("tr", {}, h("td", {}, keys.split(" ").map((k, i) => [i ? " " : "", key(k)])), h("td", {}, what)))));
}

// fn, run at most once per animation frame however often it is asked for (mouse moves come faster than
// the screen shows them, and each draw paints the whole image)
export function everyFrame(fn) {
  let asked = false;
  return () => {
    if (asked) return;
    asked = true;
    requestAnimationFrame(() => { asked = false; fn(); });
  };
}

export function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// a point marker: a filled circle with a dark rim, visible on any face
export function dot(ctx, X, Y, r, fill) {
  ctx.beginPath();
  ctx.arc(X, Y, r, 0, 2 * Math.PI);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(0,0,0,.7)";
  ctx.stroke();
}
