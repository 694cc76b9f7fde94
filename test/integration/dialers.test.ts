/**
 * Every dialer passes the one conformance suite: direct, and through a Ladder server with each
 * Shadowsocks method (and 2022 multi-user with identity headers).
 */
import { describe } from 'node:test';
import { randomBytes } from 'node:crypto';
import { dialerSuite } from '../helpers/dialer-suite.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { SsPacketDialer, SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { SsServer } from '../../src/server/ss-server.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SS_METHOD_NAMES, SS_METHODS } from '../../src/crypto/methods.js';

describe('direct', () => {
  dialerSuite('direct', async () => ({
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    close: async () => {},
  }));
});

for (const method of SS_METHOD_NAMES) {
  describe(method, () => {
    dialerSuite(`ss ${method}`, async () => {
      const spec = SS_METHODS[method];
      const password =
        spec.edition === 2017
          ? randomBytes(12).toString('base64url')
          : randomBytes(spec.keySize).toString('base64');
      const key = makeCipherKey(method, password);
      const decoy = makeCipherKey(
        method,
        spec.edition === 2017 ? 'another' : randomBytes(spec.keySize).toString('base64'),
      );
      const server = new SsServer({
        keys: [
          { id: 'decoy', key: decoy },
          { id: 'k', key },
        ],
        dialer: new DirectDialer({ recycleReads: true }),
        packetDialer: new DirectPacketDialer(),
      });
      const addr = await server.listen('127.0.0.1', 0);
      const at = { host: '127.0.0.1', port: addr.port };
      return {
        dialer: new SsStreamDialer(at, key),
        packetDialer: new SsPacketDialer(at, key),
        close: () => server.close(500),
      };
    });
  });
}

describe('2022 multi-user (SIP023)', () => {
  dialerSuite('ss 2022-blake3-aes-128-gcm with identity headers', async () => {
    const ipsk = randomBytes(16).toString('base64');
    const users = Array.from({ length: 3 }, () =>
      makeCipherKey('2022-blake3-aes-128-gcm', `${ipsk}:${randomBytes(16).toString('base64')}`),
    );
    const server = new SsServer({
      keys: users.map((key, i) => ({ id: `u${i}`, key })),
      dialer: new DirectDialer(),
      packetDialer: new DirectPacketDialer(),
    });
    const addr = await server.listen('127.0.0.1', 0);
    const at = { host: '127.0.0.1', port: addr.port };
    return {
      dialer: new SsStreamDialer(at, users[2]!),
      packetDialer: new SsPacketDialer(at, users[2]!),
      close: () => server.close(500),
    };
  });
});
