// Runs the unit tests of the tracker in node's own test runner.
//
// Node 20 does not run TypeScript, so each test/*.test.ts is bundled by esbuild (the same bundler
// as the pages) into a temporary folder first; node --test then runs the bundles. Extra arguments
// go to node --test (e.g. --test-name-pattern=report).
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tests = readdirSync(join(here, "test"))
  .filter((name) => name.endsWith(".test.ts"))
  .sort()
  .map((name) => join(here, "test", name));
if (tests.length === 0) {
  console.error("no test/*.test.ts found");
  process.exit(1);
}
const outdir = mkdtempSync(join(tmpdir(), "frontend-tests-"));
try {
  await build({
    entryPoints: tests,
    outdir,
    bundle: true,
    format: "esm",
    platform: "node",
    target: ["node20"],
    outExtension: { ".js": ".mjs" },
    sourcemap: "inline",
    logLevel: "warning",
    absWorkingDir: here,
  });
  const bundles = readdirSync(outdir)
    .filter((name) => name.endsWith(".mjs"))
    .sort()
    .map((name) => join(outdir, name));
  const run = spawnSync(process.execPath, ["--enable-source-maps", "--test", ...process.argv.slice(2), ...bundles], {
    stdio: "inherit",
  });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
