// A small line chart on a canvas: two or more series over one x axis, optional log-scale y, a hover read-out,
// and a size that follows its container. No dependency; it draws only when its data, size or hover changes.
//
//   const chart = new LineChart(box, { series: [{ name: "src", color: "#f0a040" }, ...], logY: true,
//                                      onHover: (row) => ... });   // row = [x, y0, y1, ...] or null
//   chart.setData([[x, y0, y1], ...]);                             // rows sorted by x

const PAD = { left: 58, right: 14, top: 12, bottom: 26 };

// 1, 2, 5 x 10^k steps giving about `count` ticks over [lo, hi]
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

// log-scale ticks: every decade, and 2 and 5 within a decade when the range spans few decades
function logTicks(lo, hi) {
  const out = [];
  const span = Math.log10(hi) - Math.log10(lo);
  const mults = span < 1.2 ? [1, 1.5, 2, 3, 5, 7] : span < 3 ? [1, 2, 5] : [1];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mults) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  return out;
}

export function formatNumber(v) {
  if (!isFinite(v)) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(1);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  return +v.toPrecision(3) + "";
}

function formatX(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${Math.round(v)}`;
}

export class LineChart {
  constructor(container, { series, logY = false, onHover = null } = {}) {
    this.box = container;
    this.series = series;
    this.logY = logY;
    this.onHover = onHover;
    this.rows = [];
    this.hover = null;  // index into rows
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "loss graph");
    this.box.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.pending = false;
    this.resize = new ResizeObserver(() => this.redraw());
    this.resize.observe(this.box);
    this.canvas.addEventListener("mousemove", (e) => this.pointer(e));
    this.canvas.addEventListener("mouseleave", () => { this.hover = null; this.redraw(); if (this.onHover) this.onHover(null); });
  }

  setData(rows) {
    this.rows = rows;
    if (this.hover !== null && this.hover >= rows.length) this.hover = null;
    this.redraw();
  }

  setLogY(on) { this.logY = on; this.redraw(); }

  get pointCount() { return this.rows.length; }

  redraw() {  // coalesce into one frame
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  // the plot's scales for the current data and size
  scales(width, height) {
    const rows = this.rows;
    const x0 = rows.length ? rows[0][0] : 0;
    const x1 = rows.length ? rows[rows.length - 1][0] : 1;
    let lo = Infinity, hi = -Infinity;
    for (const r of rows) {
      for (let s = 1; s <= this.series.length; s++) {
        const v = r[s];
        if (v === null || v === undefined || !isFinite(v) || (this.logY && v <= 0)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (!(hi >= lo)) { lo = this.logY ? 0.01 : 0; hi = 1; }
    const f = this.logY ? Math.log10 : (v) => v;
    let ylo = f(lo), yhi = f(hi);
    const padY = (yhi - ylo) * 0.06 || (this.logY ? 0.1 : Math.abs(yhi) * 0.1 || 1);
    ylo -= padY; yhi += padY;
    const w = width - PAD.left - PAD.right, h = height - PAD.top - PAD.bottom;
    const xs = x1 > x0 ? w / (x1 - x0) : 0;
    return {
      x0, x1, lo: this.logY ? 10 ** ylo : ylo, hi: this.logY ? 10 ** yhi : yhi, w, h,
      px: (x) => PAD.left + (x1 > x0 ? (x - x0) * xs : w / 2),
      py: (y) => PAD.top + h - ((f(y) - ylo) / (yhi - ylo)) * h,
    };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(120, this.box.clientWidth), height = Math.max(80, this.box.clientHeight);
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const css = getComputedStyle(this.box);
    const text = css.getPropertyValue("--muted").trim() || "#9aa1ad";
    const grid = css.getPropertyValue("--line").trim() || "#333844";
    const fg = css.getPropertyValue("--text").trim() || "#e6e8ec";
    ctx.font = "11px system-ui, sans-serif";
    const sc = this.scales(width, height);
    this.sc = sc;

    // grid and axes
    ctx.strokeStyle = grid; ctx.fillStyle = text; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const yt = this.logY ? logTicks(sc.lo, sc.hi) : niceTicks(sc.lo, sc.hi, Math.max(2, Math.floor(sc.h / 40)));
    for (const v of yt) {
      const y = Math.round(sc.py(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(PAD.left + sc.w, y); ctx.stroke();
      ctx.fillText(formatNumber(v), PAD.left - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    if (this.rows.length > 1) {
      for (const v of niceTicks(sc.x0, sc.x1, Math.max(2, Math.floor(sc.w / 90)))) {
        const x = Math.round(sc.px(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, PAD.top + sc.h); ctx.lineTo(x, PAD.top + sc.h + 4); ctx.stroke();
        ctx.fillText(formatX(v), x, PAD.top + sc.h + 7);
      }
    }
    ctx.strokeRect(PAD.left + 0.5, PAD.top + 0.5, sc.w, sc.h);
    if (!this.rows.length) {
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText("no loss figures yet", PAD.left + sc.w / 2, PAD.top + sc.h / 2);
      return;
    }

    // the series: more rows than pixels are averaged per pixel column
    ctx.save();
    ctx.beginPath(); ctx.rect(PAD.left, PAD.top, sc.w, sc.h); ctx.clip();
    ctx.lineWidth = 1.5; ctx.lineJoin = "round";
    const perPixel = this.rows.length > sc.w * 1.5;
    this.series.forEach((s, i) => {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      let started = false, col = null, sum = 0, n = 0, colX = 0;
      const point = (x, y) => {
        if (this.logY && y <= 0) return;
        const yy = sc.py(y);
        if (started) ctx.lineTo(x, yy); else { ctx.moveTo(x, yy); started = true; }
      };
      for (const r of this.rows) {
        const v = r[i + 1];
        if (v === null || v === undefined || !isFinite(v)) continue;
        const x = sc.px(r[0]);
        if (!perPixel) { point(x, v); continue; }
        const c = Math.floor(x);
        if (c !== col && n) { point(colX, sum / n); sum = 0; n = 0; }
        col = c; colX = x; sum += v; n++;
      }
      if (perPixel && n) point(colX, sum / n);
      ctx.stroke();
    });
    ctx.restore();

    // legend
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    let lx = PAD.left + 10;
    for (const s of this.series) {
      ctx.fillStyle = s.color; ctx.fillRect(lx, PAD.top + 10, 14, 3);
      ctx.fillStyle = fg; ctx.fillText(s.name, lx + 18, PAD.top + 11);
      lx += 28 + ctx.measureText(s.name).width;
    }
    if (this.logY) { ctx.fillStyle = text; ctx.fillText("log scale", lx + 4, PAD.top + 11); }

    // hover: a line at the nearest row and a dot on each series
    if (this.hover !== null && this.rows[this.hover]) {
      const r = this.rows[this.hover];
      const x = Math.round(sc.px(r[0])) + 0.5;
      ctx.strokeStyle = text; ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(x, PAD.top); ctx.lineTo(x, PAD.top + sc.h); ctx.stroke();
      ctx.setLineDash([]);
      this.series.forEach((s, i) => {
        const v = r[i + 1];
        if (v === null || v === undefined || !isFinite(v) || (this.logY && v <= 0)) return;
        ctx.fillStyle = s.color; ctx.beginPath(); ctx.arc(x, sc.py(v), 3.5, 0, 2 * Math.PI); ctx.fill();
      });
    }
  }

  pointer(e) {
    if (!this.rows.length || !this.sc) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const sc = this.sc;
    const x = sc.x1 > sc.x0 ? sc.x0 + ((px - PAD.left) / sc.w) * (sc.x1 - sc.x0) : sc.x0;
    let lo = 0, hi = this.rows.length - 1;  // the nearest row by x (rows are sorted)
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (this.rows[mid][0] < x) lo = mid; else hi = mid; }
    const i = Math.abs(this.rows[lo][0] - x) <= Math.abs(this.rows[hi][0] - x) ? lo : hi;
    if (i !== this.hover) {
      this.hover = i;
      this.redraw();
      if (this.onHover) this.onHover(this.rows[i]);
    }
  }
}
