// Web Connectivity's verdict (ts-017 "Local processing"), case by case, on hand-made observations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyzeWeb,
  compareResponses,
  dnsConsistency,
  type ControlSide,
  type HttpSummary,
  type ProbeSide,
} from './web-analysis.js';

const page: HttpSummary = {
  status: 200,
  bodyLength: 5000,
  headerNames: ['Date', 'Content-Type', 'X-Site-Id', 'Content-Length'],
  title: 'Example Domain news',
};
const blockPage: HttpSummary = {
  status: 200,
  bodyLength: 300,
  headerNames: ['Content-Type', 'Content-Length', 'Connection'],
  title: 'Access Denied',
};

const probe = (o: Partial<ProbeSide> = {}): ProbeSide => ({
  scheme: 'http',
  dnsFailure: null,
  addresses: ['198.18.5.1'],
  tcp: [{ ip: '198.18.5.1', port: 80, failure: null }],
  tls: [],
  httpFailure: null,
  response: page,
  ...o,
});
const control = (o: Partial<ControlSide> = {}): ControlSide => ({
  failure: null,
  dnsFailure: null,
  addresses: ['198.18.5.1'],
  endpoints: {},
  httpFailure: null,
  response: page,
  ...o,
});

test('accessible: same addresses, same page', () => {
  const v = analyzeWeb(probe(), control(), false);
  assert.equal(v.dns_consistency, 'consistent');
  assert.equal(v.blocking, false);
  assert.equal(v.accessible, true);
  assert.equal(v.body_length_match, true);
  assert.equal(v.status_code_match, true);
  assert.equal(v.headers_match, true); // x-site-id is uncommon and shared
  assert.equal(v.title_match, true);
});

test('dns: forged addresses, nothing connects', () => {
  const v = analyzeWeb(
    probe({
      addresses: ['198.18.254.10'],
      tcp: [{ ip: '198.18.254.10', port: 80, failure: 'generic_timeout_error' }],
      httpFailure: 'generic_timeout_error',
      response: undefined,
    }),
    control(),
    false,
  );
  assert.equal(v.dns_consistency, 'inconsistent');
  assert.equal(v.blocking, 'dns');
  assert.equal(v.accessible, false);
});

test('dns: an NXDOMAIN only the probe sees', () => {
  const v = analyzeWeb(
    probe({
      dnsFailure: 'dns_nxdomain_error',
      addresses: [],
      tcp: [],
      httpFailure: 'dns_nxdomain_error',
      response: undefined,
    }),
    control(),
    false,
  );
  assert.equal(v.dns_consistency, 'inconsistent');
  assert.equal(v.blocking, 'dns');
});

test('both NXDOMAIN: consistent, not blocked, not accessible', () => {
  const v = analyzeWeb(
    probe({
      dnsFailure: 'dns_nxdomain_error',
      addresses: [],
      tcp: [],
      httpFailure: 'dns_nxdomain_error',
      response: undefined,
    }),
    control({
      dnsFailure: 'dns_nxdomain_error',
      addresses: [],
      httpFailure: 'unknown_failure: x',
      response: undefined,
    }),
    false,
  );
  assert.equal(v.dns_consistency, 'consistent');
  assert.equal(v.blocking, false);
  assert.equal(v.accessible, false);
});

test('tcp_ip: every connect times out where the control connects', () => {
  const v = analyzeWeb(
    probe({
      tcp: [{ ip: '198.18.5.1', port: 80, failure: 'generic_timeout_error' }],
      httpFailure: 'generic_timeout_error',
      response: undefined,
    }),
    control({ endpoints: { '198.18.5.1:80': { ok: true, failure: null } } }),
    false,
  );
  assert.equal(v.blocking, 'tcp_ip');
  assert.equal(v.accessible, false);
});

test('the control cannot reach the probe addresses either: dns, whatever consistency said', () => {
  const v = analyzeWeb(
    probe({
      addresses: ['198.18.9.9'],
      tcp: [{ ip: '198.18.9.9', port: 80, failure: 'connection_refused' }],
      tls: [],
      httpFailure: 'connection_refused',
      response: undefined,
    }),
    control({
      addresses: ['198.18.5.1'],
      endpoints: { '198.18.9.9:80': { ok: false, failure: 'eof_error' } },
    }),
    false,
  );
  assert.equal(v.blocking, 'dns');
});

test('http-failure: TLS reset after the ClientHello', () => {
  const v = analyzeWeb(
    probe({
      scheme: 'https',
      tcp: [{ ip: '198.18.5.1', port: 443, failure: null }],
      tls: [{ ip: '198.18.5.1', port: 443, failure: 'connection_reset' }],
      httpFailure: 'connection_reset',
      response: undefined,
    }),
    control(),
    false,
  );
  assert.equal(v.blocking, 'http-failure');
  assert.equal(v.accessible, false);
});

test('http-diff: a block page over plain HTTP', () => {
  const v = analyzeWeb(probe({ response: blockPage }), control(), false);
  assert.equal(v.status_code_match, true);
  assert.equal(v.body_length_match, false);
  assert.equal(v.headers_match, false);
  assert.equal(v.title_match, false);
  assert.equal(v.blocking, 'http-diff');
  assert.equal(v.accessible, false);
});

test('https: a final response is the site (the certificate was verified)', () => {
  const v = analyzeWeb(
    probe({
      scheme: 'https',
      response: blockPage,
      tls: [{ ip: '198.18.5.1', port: 443, failure: null }],
    }),
    control(),
    false,
  );
  assert.equal(v.blocking, false);
  assert.equal(v.accessible, true);
});

test('a CDN: other addresses, but a verified TLS handshake makes them consistent', () => {
  assert.equal(
    dnsConsistency(
      probe({
        scheme: 'https',
        addresses: ['198.18.6.6'],
        tls: [{ ip: '198.18.6.6', port: 443, failure: null }],
      }),
      control(),
      false,
    ),
    'consistent',
  );
});

test('down for everyone: not blocked, not accessible', () => {
  const v = analyzeWeb(
    probe({
      tcp: [{ ip: '198.18.5.1', port: 80, failure: 'connection_refused' }],
      httpFailure: 'connection_refused',
      response: undefined,
    }),
    control({ httpFailure: 'connection_refused', response: undefined }),
    false,
  );
  assert.equal(v.blocking, false);
  assert.equal(v.accessible, false);
});

test('no control: nothing concluded', () => {
  const v = analyzeWeb(
    probe(),
    control({ failure: 'no working transport', response: undefined }),
    false,
  );
  assert.equal(v.blocking, null);
  assert.equal(v.accessible, null);
  assert.equal(v.dns_consistency, null);
});

test('compareResponses: ts-017 rules for each key', () => {
  const none = compareResponses(undefined, page);
  assert.equal(none.body_proportion, null);
  const r = compareResponses({ ...page, bodyLength: 3600 }, page);
  assert.equal(r.body_proportion, 0.72);
  assert.equal(r.body_length_match, true);
  assert.equal(compareResponses({ ...page, bodyLength: 3500 }, page).body_length_match, false);
  // status: only meaningful when the control got a 2xx
  assert.equal(compareResponses({ ...page, status: 302 }, page).status_code_match, false);
  assert.equal(compareResponses(page, { ...page, status: 500 }).status_code_match, null);
  // titles: words over 4 characters, case-insensitive
  assert.equal(
    compareResponses({ ...page, title: 'NEWS of the day' }, { ...page, title: 'news' }).title_match,
    null,
  );
  assert.equal(compareResponses({ ...page, title: 'Example site' }, page).title_match, true);
  // headers: only common ones on both sides → false
  assert.equal(
    compareResponses(blockPage, { ...blockPage, headerNames: ['Date'] }).headers_match,
    false,
  );
});

test('an IP in the URL: DNS is consistent by construction', () => {
  const v = analyzeWeb(
    probe({ addresses: ['198.18.5.1'] }),
    control({ addresses: ['198.18.5.1'] }),
    true,
  );
  assert.equal(v.dns_consistency, 'consistent');
});
