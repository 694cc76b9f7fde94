/**
 * Web Connectivity's verdict from the probe's observations and the control's (ooni/spec
 * `nettests/ts-017-web-connectivity.md`, "Local processing of the measurement results"). Pure.
 *
 * The control here is Ladder's own tunnel, not an OONI test helper: it resolves the name through the
 * tunnel, checks the endpoints the probe could not reach, and fetches the page by name. The keys and
 * their meaning are OONI's:
 *
 * - `dns_consistency`: `consistent` when the probe and the control failed alike, or share an
 *   address, or the probe completed a verified TLS handshake for the name on one of its addresses
 *   (ts-017 "TLS-based IP address validation"); `inconsistent` when the probe resolved addresses
 *   and none of those hold, or its lookup failed where the control's did not; `null` otherwise.
 * - `status_code_match`, `body_proportion`, `body_length_match` (> 0.7), `headers_match`
 *   (uncommon header names shared), `title_match` (a shared word of 5+ characters): ts-017 as written.
 * - `blocking`: `false` when the page arrived and looks like the control's; `http-diff` when it
 *   arrived over HTTP but looks different; otherwise the step that failed where the control did not:
 *   `dns`, `tcp_ip`, `http-failure` (TLS and HTTP). `null` when the control itself failed.
 * - `accessible`: true when the probe got a legitimate page, false when it did not, null when the
 *   control cannot tell.
 *
 * One deviation, written down in docs/probe.md: framing headers (`Content-Length`,
 * `Transfer-Encoding`, `Connection`, `Keep-Alive`) count as common, since they say nothing about who
 * wrote the page and every block page has them.
 * @module
 */
import { isIP } from 'node:net';
import type { Failure } from './failure.js';

export type Blocking = 'dns' | 'tcp_ip' | 'http-failure' | 'http-diff' | false | null;
export type DnsConsistency = 'consistent' | 'inconsistent' | null;

export interface ProbeSide {
  readonly scheme: 'http' | 'https';
  readonly dnsFailure: Failure | null;
  /** Addresses the probe's resolver gave (or the URL's own address). */
  readonly addresses: readonly string[];
  readonly tcp: readonly {
    readonly ip: string;
    readonly port: number;
    readonly failure: Failure | null;
  }[];
  /** TLS handshakes with the URL's name as SNI, verified. */
  readonly tls: readonly {
    readonly ip: string;
    readonly port: number;
    readonly failure: Failure | null;
  }[];
  /** The failure that kept the probe from a final response (null: it got one). */
  readonly httpFailure: Failure | null;
  readonly response?: HttpSummary;
}

export interface HttpSummary {
  readonly status: number;
  readonly bodyLength: number;
  readonly headerNames: readonly string[];
  readonly title: string | undefined;
}

export interface ControlSide {
  /** Set when the control could not run at all (no working tunnel). */
  readonly failure: string | null;
  readonly dnsFailure: Failure | null;
  readonly addresses: readonly string[];
  /** Endpoint checks through the tunnel, by `ip:port` ([v6]:port). */
  readonly endpoints: Readonly<
    Record<string, { readonly ok: boolean; readonly failure: Failure | null }>
  >;
  readonly httpFailure: Failure | null;
  readonly response?: HttpSummary;
}

export interface WebVerdict {
  readonly dns_consistency: DnsConsistency;
  readonly body_proportion: number | null;
  readonly body_length_match: boolean | null;
  readonly headers_match: boolean | null;
  readonly status_code_match: boolean | null;
  readonly title_match: boolean | null;
  readonly blocking: Blocking;
  readonly accessible: boolean | null;
}

/**
 * Response headers so common that sharing them proves nothing (OONI's list, lower-case), plus the
 * framing headers (see the module comment).
 */
export const COMMON_HEADERS: ReadonlySet<string> = new Set([
  'date',
  'content-type',
  'server',
  'cache-control',
  'vary',
  'set-cookie',
  'location',
  'expires',
  'x-powered-by',
  'content-encoding',
  'last-modified',
  'accept-ranges',
  'pragma',
  'x-frame-options',
  'etag',
  'x-content-type-options',
  'age',
  'via',
  'p3p',
  'x-xss-protection',
  'content-language',
  'cf-ray',
  'strict-transport-security',
  'link',
  'x-varnish',
  // framing, not content
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
]);

export function endpointKey(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function dnsConsistency(
  p: ProbeSide,
  c: ControlSide,
  hostIsAddress: boolean,
): DnsConsistency {
  if (hostIsAddress) return 'consistent';
  if (c.failure !== null) return null;
  if (p.dnsFailure !== null && p.addresses.length === 0) {
    if (c.dnsFailure !== null && c.addresses.length === 0) {
      // Both failed: consistent only if in the same way (both NXDOMAIN, say).
      return p.dnsFailure === c.dnsFailure ? 'consistent' : null;
    }
    return 'inconsistent';
  }
  const control = new Set(c.addresses.map((a) => a.toLowerCase()));
  if (p.addresses.some((a) => control.has(a.toLowerCase()))) return 'consistent';
  // A verified TLS handshake for the name proves the address serves the site.
  if (p.tls.some((t) => t.failure === null)) return 'consistent';
  return p.addresses.length === 0 ? null : 'inconsistent';
}

function words(title: string | undefined): Set<string> {
  return new Set(
    (title ?? '')
      .toLowerCase()
      .split(/[^\p{L}\p{N}]+/u)
      .filter((w) => w.length > 4),
  );
}

function uncommon(names: readonly string[]): Set<string> {
  return new Set(names.map((n) => n.toLowerCase()).filter((n) => !COMMON_HEADERS.has(n)));
}

/** The four "is it the same page" keys (ts-017), null where they cannot be computed. */
export function compareResponses(
  probe: HttpSummary | undefined,
  control: HttpSummary | undefined,
): Pick<
  WebVerdict,
  'body_proportion' | 'body_length_match' | 'headers_match' | 'status_code_match' | 'title_match'
> {
  if (!probe || !control)
    return {
      body_proportion: null,
      body_length_match: null,
      headers_match: null,
      status_code_match: null,
      title_match: null,
    };
  let body_proportion: number | null = null;
  if (probe.bodyLength > 0 && control.bodyLength > 0)
    body_proportion = Math.min(
      probe.bodyLength / control.bodyLength,
      control.bodyLength / probe.bodyLength,
    );
  const body_length_match = body_proportion === null ? null : body_proportion > 0.7;
  const controlOk = control.status >= 200 && control.status < 300;
  const status_code_match = controlOk ? probe.status === control.status : null;
  const up = uncommon(probe.headerNames);
  const uc = uncommon(control.headerNames);
  let headers_match: boolean | null;
  if (up.size === 0 && uc.size === 0) headers_match = false;
  else headers_match = [...up].some((h) => uc.has(h));
  const wp = words(probe.title);
  const wc = words(control.title);
  const title_match = wp.size > 0 && wc.size > 0 ? [...wp].some((w) => wc.has(w)) : null;
  return { body_proportion, body_length_match, headers_match, status_code_match, title_match };
}

/** The whole verdict. */
export function analyzeWeb(p: ProbeSide, c: ControlSide, hostIsAddress: boolean): WebVerdict {
  const dns_consistency = dnsConsistency(p, c, hostIsAddress);
  const cmp = compareResponses(p.response, c.response);
  const verdict = (blocking: Blocking, accessible: boolean | null): WebVerdict => ({
    dns_consistency,
    ...cmp,
    blocking,
    accessible,
  });
  if (c.failure !== null) return verdict(null, p.response && p.scheme === 'https' ? true : null);

  if (p.response && p.httpFailure === null) {
    // ts-017: a final response over HTTPS is the site's (the certificate was verified).
    if (p.scheme === 'https') return verdict(false, true);
    // The control could not fetch the page: nothing to compare with, and the probe got one.
    if (!c.response) return verdict(false, true);
    if (cmp.status_code_match === true) {
      if (cmp.body_length_match === true || cmp.headers_match === true || cmp.title_match === true)
        return verdict(false, true);
    }
    return verdict('http-diff', false);
  }

  // No final response. If the control failed too, the site is down, not blocked.
  if (!c.response) {
    if (p.dnsFailure !== null && c.dnsFailure === null && c.addresses.length > 0)
      return verdict('dns', false);
    return verdict(false, false);
  }
  if (!hostIsAddress && p.addresses.length === 0) return verdict('dns', false);
  if (dns_consistency === 'inconsistent') return verdict('dns', false);
  const connected = p.tcp.some((t) => t.failure === null);
  if (!connected) {
    // Every connect failed: blocking by IP if the control reached the same endpoints.
    const controlReached = p.tcp.some((t) => c.endpoints[endpointKey(t.ip, t.port)]?.ok === true);
    const controlTried = p.tcp.some((t) => c.endpoints[endpointKey(t.ip, t.port)] !== undefined);
    if (controlReached || !controlTried) return verdict('tcp_ip', false);
    // The control could not reach the probe's addresses either, yet fetched the page: wrong
    // addresses, which is DNS interference whatever the consistency check could prove.
    return verdict('dns', false);
  }
  return verdict('http-failure', false);
}
