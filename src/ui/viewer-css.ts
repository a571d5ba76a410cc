/** The viewer's stylesheet: small, system fonts, readable in light and dark. */
export const VIEWER_CSS = `:root {
  color-scheme: light dark;
  font: 15px/1.4 system-ui, sans-serif;
  --ink: #1f2937; --muted: #6b7280; --paper: #ffffff; --line: #d1d5db;
  --ok: #15803d; --warn: #b45309; --bad: #b91c1c;
}
body { margin: 1.5rem auto; max-width: 52rem; padding: 0 1rem; color: var(--ink); background: var(--paper); }
h1 { font-size: 1.4rem; margin: 0; }
header p { margin: .2rem 0 1rem; color: var(--muted); }
form { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; }
fieldset { border: 1px solid var(--line); border-radius: 6px; padding: .2rem .6rem .4rem; display: flex; gap: .6rem; align-items: center; }
legend { color: var(--muted); font-size: .85rem; }
label { display: inline-flex; gap: .35rem; align-items: center; }
input, select, button { font: inherit; }
button { padding: .25rem .8rem; border-radius: 6px; border: 1px solid var(--line); background: #f3f4f6; cursor: pointer; }
button:disabled { cursor: default; opacity: .5; }
#draw { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
#resume { background: var(--warn); border-color: var(--warn); color: #fff; }
#status { margin: 1rem 0 .2rem; font-weight: 600; }
body[data-state="complete"] #status { color: var(--ok); }
body[data-state="incomplete"] #status { color: var(--warn); }
body[data-state="failed"] #status { color: var(--bad); }
#totals, #legend { margin: .2rem 0; color: var(--muted); font-variant-numeric: tabular-nums; }
#map { display: block; margin: .6rem 0; image-rendering: pixelated; max-width: 100%; }
.swatch { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 .8em; vertical-align: -.05em; border-radius: 2px; }
.swatch.allocated { background: rgb(37 99 235); }
.swatch.delta { background: rgb(234 88 12); }
.swatch.empty { background: rgb(229 231 235); }
@media (prefers-color-scheme: dark) {
  :root { --ink: #e5e7eb; --muted: #9ca3af; --paper: #111827; --line: #374151; }
  button { background: #1f2937; color: var(--ink); }
}
`;
