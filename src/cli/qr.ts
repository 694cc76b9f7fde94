/**
 * QR codes of access keys for phones. Printed only to a terminal: scripts read `ladder keys new`
 * through a pipe and take the first line, so a pipe never gets the picture.
 * @module
 */
import QRCode from 'qrcode';

/**
 * The QR code of `text` as lines of Unicode half blocks (two modules per character cell, no colour
 * escapes, so it survives any terminal). Medium error correction: a key still scans off a screen
 * photo with glare.
 */
export function renderQr(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'utf8', errorCorrectionLevel: 'M', margin: 2 });
}

/** Writes the QR code of `text` to `stream` if it is a terminal; does nothing otherwise. */
export async function printQr(
  text: string,
  stream: NodeJS.WriteStream = process.stdout,
): Promise<void> {
  if (!stream.isTTY) return;
  stream.write(await renderQr(text));
}
