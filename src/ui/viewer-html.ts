/** The viewer's page: controls, a status line, the canvas. Script and style are separate files (CSP). */
export const VIEWER_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cbt-gateway · block map</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="viewer.css">
<script type="module" src="viewer.js"></script>
</head>
<body data-state="idle">
<header>
<h1>Block map</h1>
<p>Allocated or changed blocks of a volume snapshot, drawn as they stream in from the gateway.</p>
</header>
<form id="controls">
<label>Namespace <input id="ns" value="demo" required spellcheck="false" autocomplete="off"></label>
<button type="button" id="list">List snapshots</button>
<label>Snapshot <select id="snap" required></select></label>
<fieldset>
<legend>Show</legend>
<label><input type="radio" name="mode" value="allocated" checked> allocated</label>
<label><input type="radio" name="mode" value="delta"> changed since</label>
<select id="base" aria-label="base snapshot" disabled></select>
</fieldset>
<label>Token <input id="token" type="password" autocomplete="off" placeholder="optional"></label>
<button type="submit" id="draw">Draw</button>
<button type="button" id="stop" disabled>Stop</button>
<button type="button" id="resume" hidden>Resume</button>
</form>
<p id="status" role="status" aria-live="polite">Loading…</p>
<p id="totals"></p>
<canvas id="map" width="0" height="0" aria-label="block map"></canvas>
<p id="legend"></p>
</body>
</html>
`;
