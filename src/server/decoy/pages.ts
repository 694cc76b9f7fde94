/**
 * The built-in decoy site: a plain, quiet personal site, served to anyone who reaches a TLS port
 * without a key (probers, crawlers, browsers). Operators can replace it with their own directory
 * (`--decoy-dir`) or forward to a real web server (`--fallback`). Everything is inline: no outside
 * resources, nothing that calls home.
 * @module
 */

const STYLE = `body{font:16px/1.6 Georgia,serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#222;background:#fdfdfb}
a{color:#2a5d8f}header{border-bottom:1px solid #ddd;margin-bottom:2rem}nav a{margin-right:1rem}
footer{border-top:1px solid #ddd;margin-top:3rem;color:#777;font-size:.85rem}`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title}</title><style>${STYLE}</style></head>
<body><header><h1>Notes from the workshop</h1><nav><a href="/">Home</a><a href="/about.html">About</a><a href="/archive.html">Archive</a></nav></header>
${body}
<footer>Written by hand, served by a small machine.</footer></body></html>
`;
}

/** Path → page; the content type comes from the extension, as nginx gives it (nginx-pages.ts). */
export const DECOY_PAGES: ReadonlyMap<string, { body: string }> = new Map([
  [
    '/index.html',
    {
      body: page(
        'Notes from the workshop',
        `<article><h2>Sharpening a plane iron</h2><p>A flat back matters more than the bevel. Start on the coarse stone,
work the last inch of the back until the scratch pattern is even, then move up the grits.</p>
<p>Hone a small secondary bevel; it saves time and the edge holds just as well.</p></article>
<article><h2>On drying timber</h2><p>An inch a year is the old rule. Stack it with stickers, keep the rain off, let the wind through.</p></article>`,
      ),
    },
  ],
  [
    '/about.html',
    {
      body: page(
        'About',
        `<p>A notebook about woodworking, kept mostly for myself. Comments are closed.</p>`,
      ),
    },
  ],
  [
    '/archive.html',
    {
      body: page(
        'Archive',
        `<ul><li><a href="/">Sharpening a plane iron</a></li><li><a href="/">On drying timber</a></li></ul>`,
      ),
    },
  ],
  ['/robots.txt', { body: 'User-agent: *\nDisallow:\n' }],
]);
