/**
 * Block pages: the censor answers a plain-HTTP request in the server's place. Many national
 * censors do this rather than reset (OONI keeps fingerprints of their pages: Iran's iframe to
 * 10.10.34.34, Indonesia's Internet Positif, Russian and Turkish ISPs' notices); the GFW does not.
 * On the packet that completes a request head whose Host is listed (the names.ts styles), the
 * module:
 *
 * 1. writes its page to the client as the server's next segment (seq = the client's ACK, the
 *    server's next sequence number; ack = the end of the request), with FIN, so the client reads a
 *    whole, well-formed response and an orderly close;
 * 2. drops the request, so the server never sees it, and sends the server a RST at the request's
 *    sequence number (or a FIN, `end: 'fin'`) to tear its side down;
 * 3. drops whatever else the flow carries.
 *
 * Any TCP port; the flow's SYN must have been seen (sequence numbers are needed).
 * @module
 */
import { parseHttpRequestHead } from '../packet/http-request.js';
import { IP_PROTO } from '../packet/ip.js';
import { buildTcpPacket, TCP_FLAG } from '../packet/l4.js';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { nameMatcher } from './names.js';

export interface BlockPageParams {
  /** Host names (GFW regex styles, see names.ts). */
  readonly hosts: readonly string[];
  /** Status of the injected response (many block pages say 200, some 403). */
  readonly status: number;
  /** The HTML page. */
  readonly page: string;
  /** How the real connection's server side is closed. */
  readonly end: 'rst' | 'fin';
}

export const BLOCKPAGE_DEFAULTS: BlockPageParams = {
  hosts: [],
  status: 200,
  page:
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Access Denied</title></head>' +
    '<body><h1>Access Denied</h1><p>Access to this website has been restricted in accordance ' +
    'with the law. If you believe this page is shown in error, contact your provider.</p>' +
    '<p>Ladder lab block page.</p></body></html>\n',
  end: 'rst',
};

const REASONS: Record<number, string> = {
  200: 'OK',
  302: 'Found',
  403: 'Forbidden',
  451: 'Unavailable For Legal Reasons',
};

/** The response the censor sends (pure). */
export function blockPageResponse(p: Pick<BlockPageParams, 'status' | 'page'>): Buffer {
  const body = Buffer.from(p.page, 'utf8');
  const head =
    `HTTP/1.1 ${p.status} ${REASONS[p.status] ?? 'Blocked'}\r\n` +
    'Content-Type: text/html; charset=utf-8\r\n' +
    `Content-Length: ${body.length}\r\n` +
    'Connection: close\r\n\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/**
 * The two packets that answer request packet `p` of `flow` (pure): the page to the client and the
 * RST or FIN to the server. `ipId` is the IPv4 ID of both.
 */
export function blockPagePackets(
  p: Packet,
  flow: Pick<Flow, 'client' | 'server'>,
  params: BlockPageParams,
  ipId: number,
): { toClient: Buffer; toServer: Buffer } {
  const tcp = p.tcp!;
  const requestEnd = (tcp.seq + p.payload.length) >>> 0;
  const serverNext = tcp.ack >>> 0; // what the client expects next from the server
  const toClient = buildTcpPacket({
    ip: {
      src: flow.server.addr,
      dst: flow.client.addr,
      protocol: IP_PROTO.TCP,
      ttl: 64,
      id: ipId,
      df: true,
    },
    srcPort: flow.server.port,
    dstPort: flow.client.port,
    seq: serverNext,
    ack: requestEnd,
    flags: TCP_FLAG.PSH | TCP_FLAG.ACK | TCP_FLAG.FIN,
    window: 0xffff,
    payload: blockPageResponse(params),
  });
  const toServer = buildTcpPacket({
    ip: {
      src: flow.client.addr,
      dst: flow.server.addr,
      protocol: IP_PROTO.TCP,
      ttl: 64,
      id: ipId,
      df: true,
    },
    srcPort: flow.client.port,
    dstPort: flow.server.port,
    seq: tcp.seq >>> 0, // the server has seen nothing from this packet on: its rcv_nxt
    ack: serverNext,
    flags: params.end === 'rst' ? TCP_FLAG.RST | TCP_FLAG.ACK : TCP_FLAG.FIN | TCP_FLAG.ACK,
    window: 0xffff,
  });
  return { toClient, toServer };
}

export class BlockPageModule implements CensorModule {
  readonly name = 'blockpage';
  readonly #p: BlockPageParams;
  readonly #host: (n: string) => boolean;

  constructor(params: Partial<BlockPageParams> = {}) {
    this.#p = { ...BLOCKPAGE_DEFAULTS, ...params };
    this.#host = nameMatcher(this.#p.hosts);
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0 || !p.tcp || (p.tcp.flags & TCP_FLAG.ACK) === 0)
      return undefined;
    const head = parseHttpRequestHead(flow.c2sData);
    if (head === null) return undefined; // the head is not complete yet
    flow.watchers.delete(this);
    if (head === undefined || head.host === undefined || !this.#host(head.host)) return undefined;
    const { toClient, toServer } = blockPagePackets(
      p,
      flow,
      this.#p,
      Math.floor(ctx.random() * 0x10000),
    );
    ctx.inject(toClient);
    ctx.inject(toServer);
    ctx.blockFlow(flow, 'both');
    ctx.emit({ module: this.name, action: 'inject', detail: `block page ${this.#p.status}` }, flow);
    return 'drop';
  }
}
