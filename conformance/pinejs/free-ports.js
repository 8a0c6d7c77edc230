// Prints N free TCP ports on 127.0.0.1, held open together so they differ.
import { createServer } from 'node:net';

const n = Number(process.argv[2] ?? 1);
const servers = await Promise.all(
	Array.from(
		{ length: n },
		() =>
			new Promise((resolve, reject) => {
				const s = createServer();
				s.once('error', reject);
				s.listen(0, '127.0.0.1', () => resolve(s));
			}),
	),
);
console.log(servers.map((s) => s.address().port).join(' '));
await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
