/**
 * A scripted TLS 1.2 server on 127.0.0.1 for the chrome client's negative tests: it answers one
 * ClientHello with ECDHE-ECDSA-AES128-GCM-SHA256 over X25519 (ServerHello with renegotiation_info,
 * extended_master_secret and ec_point_formats; Certificate; ServerKeyExchange signed with the ECDSA
 * key; ServerHelloDone), checks the client's Finished and sends its own, then echoes data. Built
 * from src/crypto/tls12-keys.ts, which interop with OpenSSL and nginx vouches for; hooks break any
 * part: the ServerHello fields, the first flight's messages, the Finished, the final records. It
 * records the alert the client sends back. Given a session store it keeps each full handshake's
 * session under the id its ServerHello gave, and answers a ClientHello that offers a known id with
 * the abbreviated handshake (RFC 5246 §7.3: ServerHello echoing the id, its ChangeCipherSpec and
 * Finished, then the client's).
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import { decodeClientHello } from '../../src/codec/tls-client-hello.js';
import { TlsReader, TlsWriter } from '../../src/codec/tls-wire.js';
import { hashOf } from '../../src/crypto/tls13-keys.js';
import {
  TLS12_SUITES,
  Tls12RecordProtection,
  extendedMasterSecret,
  finishedData12,
  keyBlock12,
} from '../../src/crypto/tls12-keys.js';
import { x25519Pair, x25519Shared } from '../../src/crypto/tls-kex.js';

export interface Msg {
  type: number;
  body: Buffer;
}

export interface Script12 {
  /** DER certificates, leaf first, and the leaf's private key (ECDSA P-256). */
  chain: Buffer[];
  key: KeyObject;
  /** Changes the ServerHello before it is written; `exts` are written in map order. */
  serverHello?: (sh: {
    version: number;
    random: Buffer;
    sessionId: Buffer;
    cipher: number;
    exts: Map<number, Buffer>;
    /** The ClientHello's session id (read only). */
    clientSessionId: Buffer;
  }) => void;
  /** Changes the ServerKeyExchange's parts (the signature is made before, over the real ones). */
  ske?: (p: { group: number; scheme: number; signature: Buffer }) => void;
  /** Changes the first flight (Certificate, ServerKeyExchange, ServerHelloDone) as messages. */
  flight?: (msgs: Msg[]) => Msg[];
  /** Changes the server Finished's verify_data. */
  finished?: (verifyData: Buffer) => void;
  /** Changes the records written after the client's Finished (CCS, Finished, then nothing). */
  last?: (records: Buffer[], seal: (content: Buffer, type: number) => Buffer) => Buffer[];
  /** Changes the bytes of the first answer (ServerHello … ServerHelloDone records). */
  wire?: (records: Buffer[]) => Buffer[];
  /** Ends the connection right after the first answer. */
  endAfterFlight?: boolean;
  /** Records sent after the echo of the client's first data. */
  afterEcho?: (seal: (content: Buffer, type: number) => Buffer) => Buffer[];
  /** Master secrets by session id (hex): sessions made here, and resumed when offered. */
  sessions?: Map<string, Buffer>;
}

const hsMsg = (m: Msg): Buffer =>
  new TlsWriter()
    .u8(m.type)
    .vec(3, (b) => b.bytes(m.body))
    .toBuffer();

const record = (type: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([type, 3, 3, body.length >> 8, body.length & 0xff]), body]);

export async function scriptServer12(script: Script12): Promise<{
  port: number;
  /** The alert description the client sent, once it did (or null when it closed without one). */
  alert: Promise<number | null>;
  close(): Promise<void>;
}> {
  const suite = TLS12_SUITES.get(0xc02b)!;
  let gotAlert!: (d: number | null) => void;
  const alert = new Promise<number | null>((r) => (gotAlert = r));
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      gotAlert(null);
    });
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let st: ReturnType<typeof answer> | null = null;
    let clientRead: Tls12RecordProtection | null = null;
    let serverWrite: Tls12RecordProtection | null = null;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!st) {
        const ch = decodeClientHello(buf);
        if (!ch) return;
        const chMsg = buf.subarray(5, ch.bytesRead);
        buf = buf.subarray(ch.bytesRead);
        st = answer(s, ch.value.random, Buffer.from(ch.value.sessionId), chMsg);
        serverWrite = st.abbreviatedWrite;
      }
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        const n = 5 + buf.readUInt16BE(3);
        const rec = buf.subarray(0, n);
        buf = buf.subarray(n);
        const type = rec[0]!;
        let body: Buffer = rec.subarray(5);
        if (clientRead) {
          const p = clientRead.open(rec.subarray(0, 5), Buffer.from(body));
          if (!p) return void s.destroy();
          body = p;
        }
        if (type === 21) gotAlert(body[1]!);
        else if (type === 20) {
          const k = keyBlock12(suite, st.master(), st.clientRandom, st.serverRandom);
          clientRead = new Tls12RecordProtection(suite, k.clientKey, k.clientIv, false);
          serverWrite ??= new Tls12RecordProtection(suite, k.serverKey, k.serverIv, true);
        } else if (type === 22 && !clientRead) st.clientKeyExchange(body);
        else if (type === 22 && clientRead) {
          // The client's Finished: checked, then ours (in a full handshake).
          const want = finishedData12('sha256', st.master(), true, st.th());
          if (!body.subarray(4).equals(want)) return void s.destroy();
          st.transcript.push(Buffer.from(body));
          if (st.abbreviatedWrite) continue;
          script.sessions?.set(st.sessionId.toString('hex'), st.master());
          const vd = finishedData12('sha256', st.master(), false, st.th());
          script.finished?.(vd);
          const w = serverWrite!;
          let recs = [Buffer.from([20, 3, 3, 0, 1, 1]), w.seal(hsMsg({ type: 20, body: vd }), 22)];
          if (script.last) recs = script.last(recs, (c, t) => w.seal(c, t));
          s.write(Buffer.concat(recs));
        } else if (type === 23 && serverWrite) {
          const w = serverWrite;
          s.write(
            Buffer.concat([
              w.seal(body, 23),
              ...(script.afterEcho?.((c, t) => w.seal(c, t)) ?? []),
            ]),
          );
        }
      }
    });
  });

  function answer(s: Socket, clientRandom: Uint8Array, clientSessionId: Buffer, chMsg: Buffer) {
    const mine = x25519Pair();
    const sh = {
      version: 0x0303,
      random: randomBytes(32),
      sessionId: randomBytes(32),
      cipher: suite.id,
      exts: new Map<number, Buffer>([
        [0xff01, Buffer.from([0])],
        [0x0017, Buffer.alloc(0)],
        [0x000b, Buffer.from([1, 0])],
      ]),
      clientSessionId,
    };
    const known = script.sessions?.get(clientSessionId.toString('hex'));
    if (known && clientSessionId.length > 0) sh.sessionId = Buffer.from(clientSessionId);
    script.serverHello?.(sh);
    const shMsg = hsMsg({
      type: 2,
      body: new TlsWriter()
        .u16(sh.version)
        .bytes(sh.random)
        .vec(1, (v) => v.bytes(sh.sessionId))
        .u16(sh.cipher)
        .u8(0)
        .vec(2, (x) => {
          for (const [t, d] of sh.exts) x.u16(t).vec(2, (v) => v.bytes(d));
        })
        .toBuffer(),
    });
    const cert: Msg = {
      type: 11,
      body: new TlsWriter()
        .vec(3, (l) => {
          for (const c of script.chain) l.vec(3, (d) => d.bytes(c));
        })
        .toBuffer(),
    };
    const params = new TlsWriter()
      .u8(3)
      .u16(0x001d)
      .vec(1, (p) => p.bytes(mine.pub))
      .toBuffer();
    const ske = {
      group: 0x001d,
      scheme: 0x0403,
      signature: sign('sha256', Buffer.concat([clientRandom, sh.random, params]), {
        key: script.key,
        dsaEncoding: 'der',
      }),
    };
    script.ske?.(ske);
    params.writeUInt16BE(ske.group, 1);
    const skeMsg: Msg = {
      type: 12,
      body: new TlsWriter()
        .bytes(params)
        .u16(ske.scheme)
        .vec(2, (v) => v.bytes(ske.signature))
        .toBuffer(),
    };
    if (known && clientSessionId.length > 0)
      return abbreviated(s, known, clientRandom, sh, chMsg, shMsg);
    let msgs: Msg[] = [cert, skeMsg, { type: 14, body: Buffer.alloc(0) }];
    if (script.flight) msgs = script.flight(msgs);
    const transcript: Buffer[] = [chMsg, shMsg, ...msgs.map(hsMsg)];
    let records = [record(22, shMsg), ...msgs.map((m) => record(22, hsMsg(m)))];
    if (script.wire) records = script.wire(records);
    if (script.endAfterFlight) s.end(Buffer.concat(records));
    else s.write(Buffer.concat(records));
    let master: Buffer | null = null;
    const th = (): Buffer => hashOf('sha256', ...transcript);
    return {
      clientRandom,
      serverRandom: sh.random,
      sessionId: sh.sessionId,
      abbreviatedWrite: null as Tls12RecordProtection | null,
      transcript,
      th,
      master: () => master!,
      clientKeyExchange(body: Buffer): void {
        for (let r = new TlsReader(body, 'client flight'); r.left;) {
          const type = r.u8();
          const m = r.vec(3, 'message');
          const raw = Buffer.from(
            body.subarray(body.length - r.left - 4 - m.left, body.length - r.left),
          );
          transcript.push(raw);
          if (type === 16) {
            const shared = x25519Shared(mine.priv, m.vec(1, 'point').rest())!;
            master = extendedMasterSecret('sha256', shared, th());
          }
        }
      },
    };
  }

  /** RFC 5246 §7.3: ServerHello, ChangeCipherSpec and Finished under the session's secret. */
  function abbreviated(
    s: Socket,
    master: Buffer,
    clientRandom: Uint8Array,
    sh: { random: Buffer; sessionId: Buffer },
    chMsg: Buffer,
    shMsg: Buffer,
  ) {
    const transcript: Buffer[] = [chMsg, shMsg];
    const th = (): Buffer => hashOf('sha256', ...transcript);
    const k = keyBlock12(suite, master, clientRandom, sh.random);
    const w = new Tls12RecordProtection(suite, k.serverKey, k.serverIv, true);
    const vd = finishedData12('sha256', master, false, th());
    script.finished?.(vd);
    const fin = hsMsg({ type: 20, body: vd });
    transcript.push(fin);
    let last = [Buffer.from([20, 3, 3, 0, 1, 1]), w.seal(fin, 22)];
    if (script.last) last = script.last(last, (c, t) => w.seal(c, t));
    let records = [record(22, shMsg), ...last];
    if (script.wire) records = script.wire(records);
    if (script.endAfterFlight) s.end(Buffer.concat(records));
    else s.write(Buffer.concat(records));
    return {
      clientRandom,
      serverRandom: sh.random,
      sessionId: sh.sessionId,
      abbreviatedWrite: w as Tls12RecordProtection | null,
      transcript,
      th,
      master: () => master,
      clientKeyExchange(): void {},
    };
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    alert,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
