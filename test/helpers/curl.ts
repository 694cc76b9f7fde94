/** Runs real curl asynchronously (servers under test often live in the same process). */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';

export interface CurlResult {
  code: number | null;
  body: Buffer;
  sha256: string;
  stderr: string;
}

/** `onBody` runs once, when the first body bytes arrive (a transfer that is under way). */
export function curl(args: string[], timeoutS = 30, onBody?: () => void): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const c = spawn('curl', ['-sS', '--max-time', String(timeoutS), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const parts: Buffer[] = [];
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => {
      if (parts.length === 0) onBody?.();
      parts.push(d);
    });
    c.stderr.on('data', (d: Buffer) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => {
      const body = Buffer.concat(parts);
      resolve({ code, body, sha256: createHash('sha256').update(body).digest('hex'), stderr });
    });
  });
}
