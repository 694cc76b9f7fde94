/**
 * Prints a QR code of an access key to a terminal (never into pipes: scripts read the first line).
 * @module
 */
import QRCode from 'qrcode';

export async function printQr(
  text: string,
  stream: NodeJS.WriteStream = process.stdout,
): Promise<void> {
  if (!stream.isTTY) return;
  const art = await QRCode.toString(text, { type: 'utf8', errorCorrectionLevel: 'M', margin: 2 });
  stream.write(art);
}
