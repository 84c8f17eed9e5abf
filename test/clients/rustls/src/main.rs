//! A TLS client with webpki's strict X.509 checks: GET https://<name>:<port><path> trusting only
//! the CA file. Usage: digestd-rustls-client <ca.pem> <server-name> <port> <path>
use std::convert::TryFrom;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::{env, fs::File, process};

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: {} <ca.pem> <server-name> <port> <path>", args[0]);
        process::exit(2);
    }
    let (ca_path, server_name, port, path) = (&args[1], &args[2], &args[3], &args[4]);
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = BufReader::new(File::open(ca_path).expect("open the CA file"));
    for der in rustls_pemfile::certs(&mut reader).expect("read the CA file") {
        roots.add(&rustls::Certificate(der)).expect("add the CA certificate");
    }
    let config = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::ServerName::try_from(server_name.as_str()).expect("a valid server name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let port: u16 = port.parse().expect("a port number");
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut tls = rustls::Stream::new(&mut connection, &mut socket);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    if let Err(error) = tls.write_all(request.as_bytes()) {
        println!("error: {error}");
        process::exit(1);
    }
    let mut response = Vec::new();
    if let Err(error) = tls.read_to_end(&mut response) {
        // A server may close without close_notify once the whole response is sent.
        if error.kind() != ErrorKind::UnexpectedEof || response.is_empty() {
            println!("error: {error}");
            process::exit(1);
        }
    }
    println!(
        "rustls {:?} {:?}",
        connection.protocol_version().expect("a negotiated version"),
        connection.negotiated_cipher_suite().expect("a negotiated suite").suite()
    );
    print!("{}", String::from_utf8_lossy(&response));
}
