// esbuild bundles the CSS a page imports into <page>/main.css.
declare module "*.css";
