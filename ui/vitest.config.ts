import { defineConfig } from "vitest/config";

// Component tests run the real modules against a DOM built from index.html,
// with Tauri's IPC replaced by `@tauri-apps/api/mocks`.
export default defineConfig({
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts"],
    restoreMocks: true,
  },
});
