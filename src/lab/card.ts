/**
 * `ladder lab run`: the report card. Its parts: the rows ({@link transports}, one file per kind of
 * row, card-rows-*.ts), the Ladder server the rows share (ladder-server.ts), the processes they
 * start (process-runner.ts), the runner (card-runner.ts) and the text it prints (card-format.ts).
 * A new transport is a row: add it with {@link registerTransport}.
 * @module
 */
export { runIn, hasCommand } from './process-runner.js';
export { LADDER_PORT, LADDER_CONTROL_PORT, setLadderServerArgs } from './ladder-server.js';
export {
  BROWSER_HEADERS,
  HTTPS_ROW_FIRST_PAYLOAD_WAIT_MS,
  type AttemptResult,
  type TransportEntry,
} from './card-transport.js';
export {
  BROWSE_FETCHES,
  CONN_CAP,
  LARGE_PAGE,
  MANY_FETCHES,
  MUX_RENEW_SESSIONS,
  PARALLEL_FETCHES,
  ROTATE_AFTER,
  ROTATE_FETCHES,
} from './card-rows-censors.js';
export {
  curlBlockedByName,
  labRules,
  ladderBenchTransports,
  ladderTrojanNodeTransport,
  RULES_CLIENT,
  tunAttempt,
} from './card-rows-ladder.js';
export { registerTransport, stopTransports, transports } from './card-registry.js';
export { columns, runReportCard, type CardOptions, type Cell, type Column } from './card-runner.js';
export { formatCard } from './card-format.js';
