/**
 * A scripted TLS 1.3 server on 127.0.0.1 for the chrome client's negative tests: it answers one
 * ClientHello with X25519 and TLS_AES_128_GCM_SHA256, an ECDSA P-256 certificate chain, a
 * CertificateVerify and a Finished, built from the same key schedule (src/crypto/tls13-keys.ts, which
 * RFC 8448 and interop with OpenSSL vouch for), with hooks to break any part: the ServerHello, the
 * list of flight messages, the records. It records the alert the client sends back, and the
 * client's second flight (its records after the ClientHello up to its Finished, opened with the
 * client's handshake key) so that Chromium's and Ladder's can be compared.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createHmac, randomBytes, sign, type KeyObject } from 'node:crypto';
import { decodeClientHello } from '../../src/codec/tls-client-hello.js';
import { TlsReader, TlsWriter } from '../../src/codec/tls-wire.js';
import {
  RecordProtection,
  TLS13_SUITES,
  deriveSecret,
  earlySecrets,
  expandLabel,
  hashOf,
  hkdfExtract,
} from '../../src/crypto/tls13-keys.js';
import { x25519Pair, x25519Shared } from '../../src/crypto/tls-kex.js';

export interface Msg {
  type: number;
  body: Buffer;
}

export interface Script {
  /** DER certificates, leaf first, and the leaf's private key. */
  chain: Buffer[];
  key: KeyObject;
  /** Signs the CertificateVerify instead of `key` with ECDSA P-256 (an ML-DSA key, a wrong scheme). */
  signer?: { scheme: number; sign(content: Buffer): Uint8Array };
  /** Changes the ServerHello fields before it is written. */
  serverHello?: (sh: {
    random: Buffer;
    sessionId: Buffer;
    cipher: number;
    group: number;
    extra: Buffer;
    versions: number;
  }) => void;
  /** Changes the encrypted flight (EE, Certificate, CertificateVerify, Finished) as messages. */
  flight?: (
    msgs: Msg[],
    finished: (transcriptMsgs: Msg[]) => Msg,
    certificateVerify: (transcriptMsgs: Msg[]) => Msg,
  ) => Msg[];
  /** Changes the bytes written after the ClientHello (all records of the answer). */
  wire?: (records: Buffer[]) => Buffer[];
  /** Instead of answering: these bytes, then close. */
  raw?: Buffer;
}

const hsMsg = (m: Msg): Buffer =>
  new TlsWriter()
    .u8(m.type)
    .vec(3, (b) => b.bytes(m.body))
    .toBuffer();

export function certificateBody(chain: Buffer[]): Buffer {
  return new TlsWriter()
    .vec(1, () => {})
    .vec(3, (l) => {
      for (const c of chain) l.vec(3, (d) => d.bytes(c)).vec(2, () => {});
    })
    .toBuffer();
}

/** The client's records after its ClientHello, through the one that carries its Finished. */
export interface ClientFlight {
  /** Each record's outer content type and length (a ChangeCipherSpec is 20, a sealed one 23). */
  records: { type: number; length: number }[];
  /** The handshake messages those records carry, opened with the client's handshake key. */
  messages: Msg[];
}

export async function scriptServer(script: Script): Promise<{
  port: number;
  /** The alert description the client sent, once it did (or null when it closed without one). */
  alert: Promise<number | null>;
  /** The second flight of the first client that sent its Finished. */
  flight: Promise<ClientFlight>;
  close(): Promise<void>;
}> {
  const suite = TLS13_SUITES.get(0x1301)!;
  let gotAlert!: (d: number | null) => void;
  const alert = new Promise<number | null>((r) => (gotAlert = r));
  let gotFlight!: (f: ClientFlight) => void;
  const flight = new Promise<ClientFlight>((r) => (gotFlight = r));
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      gotAlert(null);
    });
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let clientRead: RecordProtection | null = null;
    let answered = false;
    const seen: ClientFlight = { records: [], messages: [] };
    let hs = Buffer.alloc(0);
    let finished = false;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!answered) {
        const ch = decodeClientHello(buf);
        if (!ch) return;
        answered = true;
        const chMsg = buf.subarray(5, ch.bytesRead);
        buf = buf.subarray(ch.bytesRead);
        if (script.raw) {
          s.end(script.raw);
          return;
        }
        clientRead = answer(s, ch.value, chMsg);
      }
      // Client records: CCS skipped, an alert (plain or under the client's handshake key) noted.
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        const n = 5 + buf.readUInt16BE(3);
        const rec = buf.subarray(0, n);
        buf = buf.subarray(n);
        if (rec[0] === 21) gotAlert(rec[6]!);
        if (!finished) seen.records.push({ type: rec[0]!, length: rec.length - 5 });
        if (rec[0] === 23 && clientRead) {
          // After the client's Finished its records are under the application key: not opened.
          const sealed = finished ? null : clientRead.open(rec.subarray(0, 5), rec.subarray(5));
          // TLSInnerPlaintext (RFC 8446 §5.2): content, the type, zero padding.
          let end = sealed ? sealed.length - 1 : -1;
          while (end > 0 && sealed![end] === 0) end--;
          const p = sealed?.subarray(0, end + 1);
          if (p && p.at(-1) === 21) gotAlert(p[1]!);
          if (p && p.at(-1) === 22) {
            hs = Buffer.concat([hs, p.subarray(0, -1)]);
            while (hs.length >= 4 && hs.length >= 4 + hs.readUIntBE(1, 3)) {
              const n = 4 + hs.readUIntBE(1, 3);
              seen.messages.push({ type: hs[0]!, body: Buffer.from(hs.subarray(4, n)) });
              hs = hs.subarray(n);
              if (seen.messages.at(-1)!.type === 20) {
                finished = true;
                gotFlight(seen);
              }
            }
          }
        }
      }
    });
  });

  function answer(
    s: Socket,
    ch: NonNullable<ReturnType<typeof decodeClientHello>>['value'],
    chMsg: Buffer,
  ): RecordProtection {
    const ks = new TlsReader(ch.extensionData.get(0x0033)!, 'key_share').vec(2, 'shares');
    let clientPub: Uint8Array | null = null;
    while (ks.left) {
      const g = ks.u16();
      const k = ks.vec(2, 'k').rest();
      if (g === 0x001d) clientPub = k;
    }
    const mine = x25519Pair();
    const shared = x25519Shared(mine.priv, clientPub!)!;
    const sh = {
      random: randomBytes(32),
      sessionId: Buffer.from(ch.sessionId),
      cipher: 0x1301,
      group: 0x001d,
      extra: Buffer.alloc(0),
      versions: 0x0304,
    };
    script.serverHello?.(sh);
    const shBody = new TlsWriter()
      .u16(0x0303)
      .bytes(sh.random)
      .vec(1, (v) => v.bytes(sh.sessionId))
      .u16(sh.cipher)
      .u8(0)
      .vec(2, (x) => {
        x.u16(0x002b).vec(2, (v) => v.u16(sh.versions));
        x.u16(0x0033).vec(2, (v) => v.u16(sh.group).vec(2, (k) => k.bytes(mine.pub)));
        x.bytes(sh.extra);
      })
      .toBuffer();
    const shMsg = hsMsg({ type: 2, body: shBody });
    const transcript: Buffer[] = [chMsg, shMsg];
    const { derived } = earlySecrets(suite);
    const hs = hkdfExtract('sha256', derived, shared);
    const th = hashOf('sha256', ...transcript);
    const sHs = deriveSecret('sha256', hs, 's hs traffic', th);
    const cHs = deriveSecret('sha256', hs, 'c hs traffic', th);
    const write = new RecordProtection(suite, sHs);
    const finishedKey = expandLabel('sha256', sHs, 'finished', new Uint8Array(0), 32);
    const finished = (msgs: Msg[]): Msg => ({
      type: 20,
      body: createHmac('sha256', finishedKey)
        .update(hashOf('sha256', ...transcript, ...msgs.map(hsMsg)))
        .digest(),
    });
    const ee: Msg = { type: 8, body: new TlsWriter().vec(2, () => {}).toBuffer() };
    const cert: Msg = { type: 11, body: certificateBody(script.chain) };
    const certificateVerify = (before: Msg[]): Msg => {
      const content = Buffer.concat([
        Buffer.alloc(64, 0x20),
        Buffer.from('TLS 1.3, server CertificateVerify\0', 'latin1'),
        hashOf('sha256', ...transcript, ...before.map(hsMsg)),
      ]);
      const sig = script.signer
        ? script.signer.sign(content)
        : sign('sha256', content, { key: script.key, dsaEncoding: 'der' });
      return {
        type: 15,
        body: new TlsWriter()
          .u16(script.signer?.scheme ?? 0x0403)
          .vec(2, (v) => v.bytes(sig))
          .toBuffer(),
      };
    };
    const cv = certificateVerify([ee, cert]);
    let msgs = [ee, cert, cv];
    msgs.push(finished(msgs));
    if (script.flight) msgs = script.flight(msgs, finished, certificateVerify);
    let records = [
      Buffer.concat([Buffer.from([22, 3, 3, shMsg.length >> 8, shMsg.length & 0xff]), shMsg]),
      Buffer.from([20, 3, 3, 0, 1, 1]),
      // Messages over 2^14 bytes are split across records, as servers do.
      ...msgs.flatMap((m) => {
        const b = hsMsg(m);
        const out: Buffer[] = [];
        for (let i = 0; i < b.length; i += 16384)
          out.push(write.seal(b.subarray(i, i + 16384), 22));
        return out;
      }),
    ];
    if (script.wire) records = script.wire(records);
    s.write(Buffer.concat(records));
    return new RecordProtection(suite, cHs);
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    alert,
    flight,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
