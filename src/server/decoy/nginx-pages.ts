/**
 * The texts nginx 1.22 puts on the wire for a static site: status lines
 * (ngx_http_header_filter_module.c), its built-in error pages and the padding it adds for MSIE and
 * Chrome (ngx_http_special_response.c), and Debian's /etc/nginx/mime.types for the common
 * extensions. The decoy copies them so that nothing in an answer differs from nginx's.
 * @module
 */

export const STATUS_LINES: Readonly<Record<number, string>> = {
  200: '200 OK',
  206: '206 Partial Content',
  301: '301 Moved Permanently',
  304: '304 Not Modified',
  400: '400 Bad Request',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Not Allowed',
  408: '408 Request Time-out',
  411: '411 Length Required',
  412: '412 Precondition Failed',
  413: '413 Request Entity Too Large',
  414: '414 Request-URI Too Large',
  416: '416 Requested Range Not Satisfiable',
  494: '400 Bad Request',
  497: '400 Bad Request',
  500: '500 Internal Server Error',
  501: '501 Not Implemented',
  505: '505 HTTP Version Not Supported',
};

/** Statuses whose page nginx sends with `Connection: close` even on a keep-alive request. */
export const CLOSING_STATUSES: ReadonlySet<number> = new Set([400, 413, 414, 494, 497, 500, 501]);

/**
 * nginx's own error page for `status` (494: too large header, 497: plain HTTP to an HTTPS port,
 * both sent as 400), with its footer.
 */
export function errorPage(status: number, serverToken: string): string {
  const tail = `<hr><center>${serverToken}</center>\r\n</body>\r\n</html>\r\n`;
  if (status === 494)
    return (
      '<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n' +
      '<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n' +
      tail
    );
  if (status === 497)
    return (
      '<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n' +
      '<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n' +
      tail
    );
  const title = STATUS_LINES[status] ?? '500 Internal Server Error';
  return `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n${tail}`;
}

/** Appended to error pages (status >= 300) for MSIE and Chrome (nginx's msie_padding on). */
export const MSIE_PADDING =
  '<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n'.repeat(6);

/** Extension → type, from Debian's mime.types; anything else is application/octet-stream. */
export const MIME_TYPES: Readonly<Record<string, string>> = {
  html: 'text/html',
  htm: 'text/html',
  shtml: 'text/html',
  css: 'text/css',
  xml: 'text/xml',
  gif: 'image/gif',
  jpeg: 'image/jpeg',
  jpg: 'image/jpeg',
  js: 'application/javascript',
  atom: 'application/atom+xml',
  rss: 'application/rss+xml',
  txt: 'text/plain',
  avif: 'image/avif',
  png: 'image/png',
  svg: 'image/svg+xml',
  svgz: 'image/svg+xml',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  webp: 'image/webp',
  ico: 'image/x-icon',
  bmp: 'image/x-ms-bmp',
  woff: 'font/woff',
  woff2: 'font/woff2',
  json: 'application/json',
  pdf: 'application/pdf',
  zip: 'application/zip',
  wasm: 'application/wasm',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  m4a: 'audio/x-m4a',
  mp4: 'video/mp4',
  mpeg: 'video/mpeg',
  mpg: 'video/mpeg',
  webm: 'video/webm',
  mov: 'video/quicktime',
  doc: 'application/msword',
  rtf: 'application/rtf',
  '7z': 'application/x-7z-compressed',
  tar: 'application/x-tar',
};

export function mimeType(path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  if (dot <= slash) return 'application/octet-stream';
  return MIME_TYPES[path.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}
