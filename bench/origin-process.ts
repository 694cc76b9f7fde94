/**
 * The benchmark's origin server as its own process, so that serving bytes never competes with the
 * load generator's event loop. Prints `origin listening on <port>`.
 */
import { startOrigin } from '../test/helpers/origin.js';

const origin = await startOrigin();
console.log(`origin listening on ${origin.port}`);
process.on('SIGTERM', () => {
  void origin.close().then(() => process.exit(0));
});
