/**
 * The live GPU panel against a fake backend and a fake event stream:
 * readings broadcast as `gpu-tick` grow the charts, threshold states show,
 * `gpu-alert` events set the state and join the log, and a machine without
 * an NVIDIA GPU shows host CPU and memory with a clear "No NVIDIA GPU".
 */
import { emit } from "@tauri-apps/api/event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { GpuAlert, GpuPanel, GpuReading, GpuTick } from "../src/api";
import { fakeBackend, loadPage, resetBackend, settle } from "./setup";

const GiB = 2 ** 30;

const reading = (extra: Partial<GpuReading> = {}): GpuReading => ({
  index: 0,
  name: "NVIDIA H200",
  memoryUsed: 20 * GiB,
  memoryTotal: 140 * GiB,
  temperatureC: 41,
  powerW: 120,
  powerLimitW: 700,
  utilizationPct: 10,
  memoryLevel: "ok",
  temperatureLevel: "ok",
  powerLevel: "ok",
  ...extra,
});

const host = { cpuPct: 25, memoryUsed: 6 * GiB, memoryTotal: 16 * GiB, cpus: 16 };

const tick = (atMs: number, gpus: GpuReading[], activeModel: string | null = "qwen3-4b"): GpuTick => ({
  atMs,
  gpus,
  host,
  activeModel,
});

const panel = (extra: Partial<GpuPanel> = {}): GpuPanel => ({
  live: true,
  noGpu: false,
  noGpuReason: null,
  device: "cuda:0 · NVIDIA H200",
  history: [tick(1000, [reading()]), tick(3000, [reading({ utilizationPct: 30 })])],
  residents: [{ name: "qwen3-4b", kind: "llm", bytes: 9 * GiB, inUse: false }],
  worker: null,
  ...extra,
});

function chart(series: string): HTMLElement {
  const el = document.querySelector<HTMLElement>(`#gpu-live .chart[data-series="${series}"]`);
  if (!el) throw new Error(`no ${series} chart`);
  return el;
}

function points(series: string): number {
  const line = chart(series).querySelector("polyline");
  return line ? (line.getAttribute("points") ?? "").trim().split(/\s+/).length : 0;
}

beforeEach(() => {
  vi.resetModules();
  loadPage();
});

afterEach(() => resetBackend());

describe("GPU panel", () => {
  it("draws the history, then grows with each broadcast reading", async () => {
    const calls = fakeBackend({ gpu_panel: () => panel() }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    expect(calls.some((c) => c.cmd === "gpu_panel")).toBe(true);
    const live = document.getElementById("gpu-live")!;
    expect(live.textContent).toContain("cuda:0 · NVIDIA H200");
    expect(live.textContent).toContain("Model: qwen3-4b");
    expect(live.textContent).toContain("In GPU memory: qwen3-4b");
    for (const s of ["vram", "temperature", "power", "utilization"]) expect(points(s)).toBe(2);
    expect(chart("vram").textContent).toContain("20 GB / 140 GB");
    expect(chart("power").textContent).toContain("120 W / 700 W");

    await emit("gpu-tick", tick(5000, [reading({ temperatureC: 83, temperatureLevel: "warning", utilizationPct: 95 })]));
    await settle();
    expect(points("temperature")).toBe(3);
    expect(chart("temperature").textContent).toContain("83 °C");
    expect(chart("temperature").dataset.level).toBe("warning");
    expect(chart("temperature").querySelector(".badge")?.textContent).toBe("Warning");
    expect(chart("utilization").textContent).toContain("95%");
    expect(chart("vram").dataset.level).toBe("ok");
  });

  it("keeps at most 100 readings per chart", async () => {
    fakeBackend({ gpu_panel: () => panel({ history: [] }) }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    for (let i = 0; i < 130; i++) await emit("gpu-tick", tick(i * 2000, [reading({ utilizationPct: i % 100 })]));
    await settle();
    expect(gpu.gpuState().ticks.length).toBe(gpu.HISTORY);
    expect(points("utilization")).toBe(gpu.HISTORY);
  });

  it("shows threshold events: they set the state and join the log", async () => {
    fakeBackend({ gpu_panel: () => panel() }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    const critical: GpuAlert = {
      atMs: Date.now(),
      index: 0,
      topic: "memory",
      level: "critical",
      message: "GPU 0 memory critical: 134 GiB of 140 GiB (95.7%)",
    };
    await emit("gpu-alert", critical);
    await settle();
    expect(chart("vram").dataset.level).toBe("critical");
    expect(chart("vram").querySelector(".badge")?.textContent).toBe("Critical");
    const log = Array.from(document.querySelectorAll<HTMLLIElement>("#gpu-live .gpu-alerts li"));
    expect(log).toHaveLength(1);
    expect(log[0].dataset.level).toBe("critical");
    expect(log[0].textContent).toContain("memory critical");

    // The state holds through readings (hysteresis lives in the engine) until cleared.
    await emit("gpu-tick", tick(9000, [reading({ memoryLevel: "warning" })]));
    await settle();
    expect(chart("vram").dataset.level).toBe("critical");
    await emit("gpu-alert", { ...critical, level: "ok", message: "GPU 0 memory back to normal" });
    await settle();
    expect(chart("vram").dataset.level).toBe("ok");
    expect(document.querySelectorAll("#gpu-live .gpu-alerts li")).toHaveLength(2);
  });

  it("says No NVIDIA GPU and charts the host's CPU and memory", async () => {
    fakeBackend(
      {
        gpu_panel: () =>
          panel({ noGpu: true, noGpuReason: "NVML library not found", device: "CPU", history: [], residents: [] }),
      },
      { events: true },
    );
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    const live = document.getElementById("gpu-live")!;
    expect(live.textContent).toContain("No NVIDIA GPU");
    expect(live.textContent).toContain("NVML library not found");
    expect(live.textContent).toContain("Waiting for the first reading");

    await emit("gpu-tick", tick(1000, [], null));
    await emit("gpu-tick", tick(3000, [], null));
    await settle();
    expect(live.querySelector(".charts")?.getAttribute("data-device")).toBe("host");
    expect(chart("cpu").textContent).toContain("25% of 16 cores");
    expect(chart("ram").textContent).toContain("6.0 GB / 16 GB");
    expect(points("ram")).toBe(2);
    expect(live.querySelector('.chart[data-series="vram"]')).toBeNull();
    expect(live.textContent).toContain("Model: none loaded");
  });

  it("says where models run when the model worker holds them", async () => {
    fakeBackend({ gpu_panel: () => panel({ worker: "Models run in the model worker on cuda:0 · running" }) }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    expect(document.querySelector("#gpu-live .gpu-worker")?.textContent).toBe("Models run in the model worker on cuda:0 · running");
  });

  it("shows no worker line when there is nothing to say", async () => {
    fakeBackend({ gpu_panel: () => panel() }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    expect(document.getElementById("gpu-live")?.textContent).toContain("cuda:0 · NVIDIA H200");
    expect(document.querySelector("#gpu-live .gpu-worker")).toBeNull();
  });

  it("reports a failing backend in the panel", async () => {
    fakeBackend({ gpu_panel: () => Promise.reject({ code: "gpu", message: "NVML failed" }) }, { events: true });
    const gpu = await import("../src/gpu");
    await gpu.startGpuPanel();
    expect(document.getElementById("gpu-live")!.textContent).toContain("Live readings unavailable: NVML failed (gpu)");
  });

  it("scales a sparkline to its maximum and leaves gaps for missing readings", async () => {
    const { sparkline } = await import("../src/gpu");
    const svg = sparkline([0, 50, null, 100], 100);
    const lines = svg.querySelectorAll("polyline");
    expect(lines).toHaveLength(2);
    const ys = (lines[0].getAttribute("points") ?? "").split(" ").map((p) => Number(p.split(",")[1]));
    expect(ys[0]).toBeCloseTo(29);
    expect(ys[1]).toBeCloseTo(15);
    expect(Number(lines[1].getAttribute("points")!.split(",")[1])).toBeCloseTo(1);
  });
});
