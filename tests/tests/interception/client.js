// A Node HTTPS client for the interception tests: GET https://<ip><path> with SNI and Host
// set to <host>, trusting only <cafile>. Prints one JSON line.
const https = require("https");
const fs = require("fs");
const [ip, host, path, cafile] = process.argv.slice(2);
const req = https.request(
  { host: ip, servername: host, path, headers: { Host: host }, ca: fs.readFileSync(cafile), timeout: 10000 },
  (res) => {
    const issuer = res.socket.getPeerCertificate().issuer || {};
    let body = "";
    res.on("data", (d) => (body += d));
    res.on("end", () => {
      console.log(JSON.stringify({ status: res.statusCode, issuer: issuer.CN, body }));
    });
  },
);
req.on("error", (e) => console.log(JSON.stringify({ error: String(e) })));
req.end();
