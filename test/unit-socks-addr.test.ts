import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeSocksAddr,
  encodeSocksAddr,
  socksAddrLength,
  bytesToIPv6,
  ipv6ToBytes,
} from '../src/codec/socks-addr.js';
import { checkCodec } from './helpers/codec-battery.js';
import { CodecError } from '../src/errors.js';

const codec = { encode: encodeSocksAddr, length: socksAddrLength, decode: decodeSocksAddr };

test('RFC 1928 §5 IPv4 address', () => {
  checkCodec(codec, { host: '127.0.0.1', port: 443 }, Buffer.from('017f00000101bb', 'hex'));
});
test('RFC 1928 §5 domain name', () => {
  checkCodec(
    codec,
    { host: 'example.com', port: 80 },
    Buffer.from('030b6578616d706c652e636f6d0050', 'hex'),
  );
});
test('RFC 1928 §5 IPv6 address, canonical text', () => {
  checkCodec(
    codec,
    { host: '2001:2::1', port: 53 },
    Buffer.from('04200100020000000000000000000000010035', 'hex'),
  );
  assert.equal(bytesToIPv6(ipv6ToBytes('::ffff:198.18.0.1')), '::ffff:c612:1');
  assert.equal(bytesToIPv6(ipv6ToBytes('::')), '::');
  assert.equal(bytesToIPv6(ipv6ToBytes('1:0:0:2:0:0:0:3')), '1:0:0:2::3');
});
test('negative: unknown ATYP and empty name throw CodecError', () => {
  assert.throws(() => decodeSocksAddr(Buffer.from('05000000000000', 'hex'), 0), CodecError);
  assert.throws(() => decodeSocksAddr(Buffer.from('03000050', 'hex'), 0), CodecError);
  assert.throws(
    () => encodeSocksAddr({ host: 'a'.repeat(256), port: 1 }, new Uint8Array(300), 0),
    CodecError,
  );
  assert.throws(
    () => encodeSocksAddr({ host: 'a', port: 70000 }, new Uint8Array(300), 0),
    CodecError,
  );
});
