// Builds every page of the browser half into the Python package's web/ folder.
//
//   node build.mjs                         the pages listed in PAGES, into ../src/ha_agent_tracing/web
//   node build.mjs --outdir DIR            the same, into DIR (the tests rebuild into a temporary folder)
//   node build.mjs src/chat/main.ts ...    only the entry points named
//
// Each entry point src/<page>/main.ts becomes <outdir>/<page>/main.js (and main.css when the page
// imports CSS); the page's src/<page>/index.html is copied beside it. The output is deterministic:
// no hashes, no timestamps, no source maps, so a rebuild from the lockfile is byte-identical to the
// committed assets.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** One entry point per page; a page is the folder its main.ts is in. */
const PAGES = ["src/chat/main.ts", "src/dashboard/main.ts"];

function parseArgs(argv) {
  let outdir = resolve(here, "../src/ha_agent_tracing/web");
  const entries = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--outdir") {
      outdir = resolve(argv[++i] ?? "");
    } else if (argv[i].startsWith("-")) {
      throw new Error(`unknown option ${argv[i]}`);
    } else {
      entries.push(argv[i]);
    }
  }
  return { outdir, entries: entries.length ? entries : PAGES };
}

function pageOf(entry) {
  const rel = relative(join(here, "src"), resolve(here, entry));
  const parts = rel.split(/[\\/]/);
  if (parts.length !== 2 || parts[1] !== "main.ts") {
    throw new Error(`${entry}: an entry point is src/<page>/main.ts`);
  }
  return parts[0];
}

const { outdir, entries } = parseArgs(process.argv.slice(2));
const pages = entries.map(pageOf);
for (const page of pages) {
  rmSync(join(outdir, page), { recursive: true, force: true });
}
const result = await build({
  entryPoints: entries.map((entry) => resolve(here, entry)),
  outbase: join(here, "src"),
  outdir,
  entryNames: "[dir]/[name]",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "none",
  charset: "utf8",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  absWorkingDir: here,
});
for (const page of pages) {
  const html = join(here, "src", page, "index.html");
  if (existsSync(html)) {
    copyFileSync(html, join(outdir, page, "index.html"));
  }
}
for (const page of pages) {
  const dir = join(outdir, page);
  mkdirSync(dir, { recursive: true });
  const files = readdirSync(dir).sort();
  const sizes = files.map((name) => `${name} ${statSync(join(dir, name)).size} B`);
  console.log(`built ${page}: ${sizes.join(", ")}`);
}
if (result.errors.length) {
  process.exit(1);
}
