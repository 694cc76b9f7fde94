/**
 * OONI's data formats for the probe's JSON lines (ooni/spec `data-formats/`): the measurement
 * envelope (df-000), DNS queries (df-002), TCP connects (df-005), TLS handshakes (df-006) and HTTP
 * transactions (df-001). The probe shares nothing about where it stands: `probe_ip` is 127.0.0.1,
 * `probe_asn` AS0 and `probe_cc` ZZ, as OONI writes them when the user opts out.
 * @module
 */
import { isIP } from 'node:net';
import { DNS_TYPE, dnsTypeName } from '../codec/dns.js';
import type { DnsLookup } from './dns-client.js';
import type { HttpResult, TcpConnectResult, TlsResult } from './ops.js';

export const SOFTWARE_NAME = 'ladder';
export const SOFTWARE_VERSION = '0.1.0';
export const DATA_FORMAT_VERSION = '0.2.0';

/** OONI's time format: UTC "YYYY-MM-DD hh:mm:ss". */
export function ooniTime(d: Date): string {
  return d.toISOString().slice(0, 19).replace('T', ' ');
}

/** Seconds since the measurement started, rounded to microseconds. */
export function secondsSince(t0Ms: number, tMs: number): number {
  return Math.round((tMs - t0Ms) * 1000) / 1e6;
}

export interface Envelope {
  readonly testName: string;
  readonly testVersion: string;
  readonly input: string | null;
  readonly testStartTime: Date;
  readonly measurementStartTime: Date;
  readonly runtimeS: number;
  readonly resolverIp: string | null;
  readonly testHelper: { address: string; type: string } | null;
  readonly annotations: Record<string, string>;
  readonly testKeys: object;
}

/** A df-000 measurement. */
export function measurement(e: Envelope): Record<string, unknown> {
  return {
    annotations: { engine_name: SOFTWARE_NAME, platform: process.platform, ...e.annotations },
    data_format_version: DATA_FORMAT_VERSION,
    extensions: { dnst: 0, httpt: 0, tcpconnect: 0, tlshandshake: 0 },
    input: e.input,
    measurement_start_time: ooniTime(e.measurementStartTime),
    probe_asn: 'AS0',
    probe_cc: 'ZZ',
    probe_ip: '127.0.0.1',
    report_id: '',
    resolver_ip: e.resolverIp,
    software_name: SOFTWARE_NAME,
    software_version: SOFTWARE_VERSION,
    test_helpers: e.testHelper ? { backend: e.testHelper } : {},
    test_keys: e.testKeys,
    test_name: e.testName,
    test_runtime: e.runtimeS,
    test_start_time: ooniTime(e.testStartTime),
    test_version: e.testVersion,
  };
}

export function endpoint(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A df-002 query entry. */
export function queryEntry(q: DnsLookup, t0: number, tags: string[], tx: number): object {
  return {
    answers: q.answers.map((r) => {
      const base = { answer_type: dnsTypeName(r.type), ttl: r.ttl };
      if (r.type === DNS_TYPE.A) return { ...base, ipv4: r.data };
      if (r.type === DNS_TYPE.AAAA) return { ...base, ipv6: r.data };
      if (typeof r.data === 'string') return { ...base, hostname: r.data };
      return base;
    }),
    engine: q.engine,
    failure: q.failure,
    hostname: q.hostname,
    query_type: dnsTypeName(q.qtype),
    raw_response: q.raw ? q.raw.toString('base64') : null,
    rcode: q.rcode ?? null,
    resolver_address: q.resolverAddress,
    resolver_hostname: null,
    resolver_port: null,
    t0: secondsSince(t0, q.t0),
    t: secondsSince(t0, q.t),
    tags,
    transaction_id: tx,
    ...(q.lateAnswers.length > 0 ? { x_late_answers: q.lateAnswers } : {}),
  };
}

/** A df-005 entry. */
export function tcpConnectEntry(
  c: TcpConnectResult,
  t0: number,
  tags: string[],
  tx: number,
): object {
  return {
    ip: c.ip,
    port: c.port,
    status: { failure: c.failure, success: c.failure === null },
    t0: secondsSince(t0, c.t0),
    t: secondsSince(t0, c.t),
    tags,
    transaction_id: tx,
  };
}

/** A df-006 entry. */
export function tlsEntry(
  h: TlsResult,
  address: string,
  serverName: string,
  t0: number,
  tags: string[],
  tx: number,
): object {
  return {
    network: 'tcp',
    address,
    cipher_suite: h.cipherSuite ?? '',
    failure: h.failure,
    negotiated_protocol: h.negotiatedProtocol ?? '',
    no_tls_verify: false,
    peer_certificates: h.peerCertificates.map((data) => ({ data, format: 'base64' })),
    server_name: serverName,
    t0: secondsSince(t0, h.t0),
    t: secondsSince(t0, h.t),
    tags,
    tls_version: h.tlsVersion ?? '',
    transaction_id: tx,
  };
}

/** df-001's MaybeBinaryData: a string if the bytes are UTF-8, else base64. */
export function maybeBinary(b: Buffer): string | { format: 'base64'; data: string } {
  const text = b.toString('utf8');
  return Buffer.from(text, 'utf8').equals(b)
    ? text
    : { format: 'base64', data: b.toString('base64') };
}

function headerMap(list: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of list) if (!(k in out)) out[k] = v;
  return out;
}

/** A df-001 transaction. */
export function requestEntry(
  url: string,
  address: string | null,
  h: HttpResult,
  alpn: string | undefined,
  t0: number,
  tags: string[],
  tx: number,
): object {
  return {
    network: 'tcp',
    address,
    alpn: alpn ?? '',
    failure: h.failure,
    request: {
      body: '',
      body_is_truncated: false,
      headers_list: h.requestHeaders,
      headers: headerMap(h.requestHeaders),
      method: 'GET',
      tor: { exit_ip: null, exit_name: null, is_tor: false },
      x_transport: 'tcp',
      url,
    },
    response:
      h.status !== undefined
        ? {
            body: maybeBinary(h.body),
            body_is_truncated: h.bodyTruncated,
            code: h.status,
            headers_list: h.headersList,
            headers: headerMap(h.headersList),
          }
        : { body: null, body_is_truncated: false, code: 0, headers_list: [], headers: {} },
    t0: secondsSince(t0, h.t0),
    t: secondsSince(t0, h.t),
    tags,
    transaction_id: tx,
  };
}
