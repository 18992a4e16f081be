/**
 * The live GPU panel: small SVG charts of VRAM, temperature, power and
 * utilisation for each GPU (or CPU and memory of the host when there is no
 * NVIDIA GPU), the device, the active model, the warning and critical states
 * and a log of threshold events. Readings and events arrive as backend
 * events (`gpu-tick`, `gpu-alert`); the opening state comes from `gpuPanel`.
 */
import {
  asCommandError,
  gpuPanel,
  onGpuAlert,
  onGpuTick,
  type GpuAlert,
  type GpuPanel,
  type GpuReading,
  type GpuTick,
} from "./api";
import { byId, h } from "./dom";
import { errorText, formatBytes } from "./shell";

/** Points kept per chart (the engine keeps the last 100 GPU samples). */
export const HISTORY = 100;
const ALERTS_SHOWN = 8;
const SVG_NS = "http://www.w3.org/2000/svg";

type Level = "ok" | "warning" | "critical";

interface Series {
  key: string;
  label: string;
  /** The value to draw, or null when not read. */
  value: (t: GpuTick) => number | null;
  /** The top of the chart's scale. */
  max: (t: GpuTick) => number | null;
  /** The value as text. */
  text: (t: GpuTick) => string;
  /** The state by the threshold lines, when the series has one. */
  level?: (t: GpuTick) => Level;
  /** The alert topic that sets `level` (alerts carry hysteresis). */
  topic?: string;
}

const gib = (b: number) => b / 2 ** 30;

function gpuSeries(index: number): Series[] {
  const g = (t: GpuTick): GpuReading | undefined => t.gpus.find((x) => x.index === index);
  return [
    {
      key: "vram",
      label: "VRAM",
      value: (t) => (g(t)?.memoryUsed ?? null) !== null ? gib(g(t)!.memoryUsed!) : null,
      max: (t) => (g(t)?.memoryTotal ?? null) !== null ? gib(g(t)!.memoryTotal!) : null,
      text: (t) => {
        const r = g(t);
        if (!r || r.memoryUsed === null) return "n/a";
        return r.memoryTotal ? `${formatBytes(r.memoryUsed)} / ${formatBytes(r.memoryTotal)}` : formatBytes(r.memoryUsed);
      },
      level: (t) => (g(t)?.memoryLevel as Level) ?? "ok",
      topic: "memory",
    },
    {
      key: "temperature",
      label: "Temperature",
      value: (t) => g(t)?.temperatureC ?? null,
      max: () => 100,
      text: (t) => (g(t)?.temperatureC ?? null) !== null ? `${g(t)!.temperatureC} °C` : "n/a",
      level: (t) => (g(t)?.temperatureLevel as Level) ?? "ok",
      topic: "temperature",
    },
    {
      key: "power",
      label: "Power",
      value: (t) => g(t)?.powerW ?? null,
      max: (t) => g(t)?.powerLimitW ?? null,
      text: (t) => {
        const r = g(t);
        if (!r || r.powerW === null) return "n/a";
        return r.powerLimitW ? `${Math.round(r.powerW)} W / ${Math.round(r.powerLimitW)} W` : `${Math.round(r.powerW)} W`;
      },
      level: (t) => (g(t)?.powerLevel as Level) ?? "ok",
      topic: "power",
    },
    {
      key: "utilization",
      label: "Utilisation",
      value: (t) => g(t)?.utilizationPct ?? null,
      max: () => 100,
      text: (t) => (g(t)?.utilizationPct ?? null) !== null ? `${g(t)!.utilizationPct}%` : "n/a",
    },
  ];
}

const hostSeries: Series[] = [
  {
    key: "cpu",
    label: "CPU",
    value: (t) => t.host.cpuPct,
    max: () => 100,
    text: (t) => (t.host.cpuPct !== null ? `${Math.round(t.host.cpuPct)}% of ${t.host.cpus} cores` : `${t.host.cpus} cores`),
  },
  {
    key: "ram",
    label: "Memory",
    value: (t) => (t.host.memoryUsed !== null ? gib(t.host.memoryUsed) : null),
    max: (t) => (t.host.memoryTotal !== null ? gib(t.host.memoryTotal) : null),
    text: (t) =>
      t.host.memoryUsed !== null && t.host.memoryTotal !== null
        ? `${formatBytes(t.host.memoryUsed)} / ${formatBytes(t.host.memoryTotal)}`
        : "n/a",
  },
];

/** An SVG polyline of `values` scaled to `max` (null values are gaps). */
export function sparkline(values: (number | null)[], max: number): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  svg.setAttribute("aria-hidden", "true");
  const top = max > 0 ? max : 1;
  const step = values.length > 1 ? 100 / (HISTORY - 1) : 0;
  const offset = 100 - step * (values.length - 1);
  let run: string[] = [];
  const flush = () => {
    if (run.length) {
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", run.join(" "));
      svg.appendChild(line);
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) return flush();
    const x = offset + i * step;
    const y = 30 - Math.min(1, Math.max(0, v / top)) * 28 - 1;
    run.push(`${x.toFixed(2)},${y.toFixed(2)}`);
  });
  flush();
  return svg;
}

const levelText: Record<Level, string> = { ok: "", warning: "Warning", critical: "Critical" };

/** Panel state; exported for tests through `gpuState`. */
interface State {
  panel: GpuPanel | null;
  ticks: GpuTick[];
  alerts: GpuAlert[];
  /** `${index}:${topic}` → the state the latest alert left. */
  alertLevels: Map<string, Level>;
}

const state: State = { panel: null, ticks: [], alerts: [], alertLevels: new Map() };

export function gpuState(): Readonly<State> {
  return state;
}

function chart(series: Series, ticks: GpuTick[], levelOverride: Level | undefined): HTMLElement {
  const last = ticks[ticks.length - 1];
  const values = ticks.map(series.value);
  const max = ticks.reduce((m, t) => Math.max(m, series.max(t) ?? 0), 0) || Math.max(1, ...values.map((v) => v ?? 0));
  const level: Level = levelOverride ?? (series.level ? series.level(last) : "ok");
  return h(
    "figure",
    { class: "chart", attrs: { "data-series": series.key, "data-level": level } },
    h(
      "figcaption",
      {},
      h("span", { class: "chart-label", text: series.label }),
      h("span", { class: "chart-value", text: series.text(last) }),
      level !== "ok" && h("span", { class: level === "critical" ? "badge badge-bad" : "badge badge-warn", text: levelText[level] }),
    ),
    sparkline(values, max),
  );
}

function render(): void {
  const root = byId("gpu-live");
  const panel = state.panel;
  if (!panel) return;
  const last = state.ticks[state.ticks.length - 1];
  const head = h(
    "div",
    { class: "gpu-live-head" },
    panel.noGpu
      ? h("strong", { class: "cpu-flag", text: "No NVIDIA GPU" })
      : h("strong", { class: "gpu-device", text: panel.device }),
    panel.noGpu && h("span", { class: "muted", text: panel.noGpuReason ? `Running on the CPU · ${panel.noGpuReason}` : "Running on the CPU" }),
    h("span", { class: "gpu-model muted", text: `Model: ${last?.activeModel ?? "none loaded"}` }),
    panel.worker && h("span", { class: "gpu-worker muted", text: panel.worker }),
  );
  const groups: HTMLElement[] = [];
  if (!last) {
    groups.push(h("p", { class: "muted", text: panel.live ? "Waiting for the first reading…" : "Readings start once the library has opened." }));
  } else if (panel.noGpu || last.gpus.length === 0) {
    groups.push(h("div", { class: "charts", attrs: { "data-device": "host" } }, ...hostSeries.map((s) => chart(s, state.ticks, undefined))));
  } else {
    for (const gpu of last.gpus) {
      const charts = gpuSeries(gpu.index).map((s) =>
        chart(s, state.ticks, s.topic ? state.alertLevels.get(`${gpu.index}:${s.topic}`) : undefined),
      );
      groups.push(
        h(
          "div",
          { class: "gpu-group" },
          last.gpus.length > 1 && h("h3", { class: "gpu-name", text: `GPU ${gpu.index} · ${gpu.name}` }),
          h("div", { class: "charts", attrs: { "data-device": `gpu${gpu.index}` } }, ...charts),
        ),
      );
    }
  }
  const residents = panel.residents.length
    ? h(
        "p",
        { class: "muted small-text gpu-residents" },
        `In GPU memory: ${panel.residents.map((m) => `${m.name} (${formatBytes(m.bytes)}${m.inUse ? ", in use" : ""})`).join(", ")}`,
      )
    : null;
  const alerts = state.alerts.length
    ? h(
        "ul",
        { class: "gpu-alerts", attrs: { "aria-label": "GPU events" } },
        ...state.alerts.map((a) =>
          h("li", { attrs: { "data-level": a.level } }, h("time", { text: new Date(a.atMs).toLocaleTimeString() }), " ", a.message),
        ),
      )
    : null;
  root.replaceChildren(head, ...groups, residents ?? "", alerts ?? "");
}

/** Adds a reading; readings arrive about every two seconds. */
export function addTick(tick: GpuTick): void {
  state.ticks.push(tick);
  if (state.ticks.length > HISTORY) state.ticks.splice(0, state.ticks.length - HISTORY);
  render();
}

/** Records an alert: it sets its topic's state and joins the log. */
export function addAlert(alert: GpuAlert): void {
  if (alert.index !== null && alert.level !== "info") {
    state.alertLevels.set(`${alert.index}:${alert.topic}`, alert.level as Level);
  }
  state.alerts.unshift(alert);
  state.alerts.length = Math.min(state.alerts.length, ALERTS_SHOWN);
  render();
}

let listening = false;

/** Loads the panel's device, models and history; readings already received are kept. */
export async function loadGpuPanel(): Promise<void> {
  const root = byId("gpu-live");
  try {
    const panel = await gpuPanel();
    state.panel = panel;
    // Readings that arrived while the panel loaded are newer than its history.
    if (state.ticks.length < panel.history.length) state.ticks = [...panel.history, ...state.ticks].slice(-HISTORY);
    render();
  } catch (err) {
    root.replaceChildren(h("p", { class: "error", text: `Live readings unavailable: ${errorText(asCommandError(err))}` }));
  }
}

/** Follows the backend's readings and events, then loads the panel. */
export async function startGpuPanel(): Promise<void> {
  if (!listening) {
    listening = true;
    await Promise.all([onGpuTick(addTick), onGpuAlert(addAlert)]).catch(() => undefined);
  }
  await loadGpuPanel();
}
