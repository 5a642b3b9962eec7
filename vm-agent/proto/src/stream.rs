//! Byte streams over vsock that keep TCP/Unix half-close semantics.
//!
//! A vsock stream cannot be trusted to carry a half-close: vhost-device-vsock turns the host's
//! `shutdown(SHUT_WR)` into a full shutdown and drops the guest's. `docker run -i` needs it (the
//! CLI half-closes after stdin's EOF and still reads the output), so both ends frame the bytes:
//! `[kind: u8][len: u32 BE][len bytes]`, with kind [`DATA`] or [`EOF`] (len 0, "no more from me").
//! [`relay`] joins such a framed stream to a plain one (a Unix socket, an in-memory pipe).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A frame of payload bytes.
pub const DATA: u8 = 0;
/// The sender will send nothing more (its half-close); carries no payload.
pub const EOF: u8 = 1;
/// The largest payload of one frame.
pub const MAX_FRAME: usize = 64 * 1024;
const HEADER: usize = 5;

/// Copies between `framed` (speaking this module's framing) and `plain` until both directions
/// have ended: a half-close on either side is passed on as one, and the relay returns when both
/// halves are closed. An abrupt end of `framed` (no [`EOF`] frame) or a bad frame is an error,
/// and dropping both streams then closes everything.
pub async fn relay<F, P>(framed: F, plain: P) -> io::Result<()>
where
    F: AsyncRead + AsyncWrite + Send,
    P: AsyncRead + AsyncWrite + Send,
{
    let (framed_rx, mut framed_tx) = tokio::io::split(framed);
    // Frames are read through a buffer: a header and its payload then cost one read, not two or
    // more (syscalls are what a relay spends its time on, and they are dear in an emulated guest).
    let mut framed_rx = tokio::io::BufReader::with_capacity(HEADER + MAX_FRAME, framed_rx);
    let (mut plain_rx, mut plain_tx) = tokio::io::split(plain);
    let outbound = async {
        let mut buf = vec![0u8; HEADER + MAX_FRAME];
        loop {
            let n = plain_rx.read(&mut buf[HEADER..]).await?;
            let (kind, len) = if n == 0 { (EOF, 0u32) } else { (DATA, u32::try_from(n).unwrap_or(u32::MAX)) };
            buf[0] = kind;
            buf[1..HEADER].copy_from_slice(&len.to_be_bytes());
            framed_tx.write_all(&buf[..HEADER + n]).await?;
            if n == 0 {
                framed_tx.flush().await?;
                return Ok::<_, io::Error>(());
            }
        }
    };
    let inbound = async {
        let mut header = [0u8; HEADER];
        let mut buf = vec![0u8; MAX_FRAME];
        loop {
            if let Err(e) = framed_rx.read_exact(&mut header).await {
                let _ = plain_tx.shutdown().await;
                return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(io::ErrorKind::ConnectionAborted, "the vsock peer went away without closing")
                } else {
                    e
                });
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            match header[0] {
                DATA if (1..=MAX_FRAME).contains(&len) => {
                    framed_rx.read_exact(&mut buf[..len]).await?;
                    plain_tx.write_all(&buf[..len]).await?;
                }
                EOF if len == 0 => {
                    plain_tx.shutdown().await?;
                    return Ok(());
                }
                kind => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad frame: kind {kind}, {len} bytes"),
                    ))
                }
            }
        }
    };
    tokio::try_join!(outbound, inbound).map(|_| ())
}

/// Writes one [`DATA`] frame (a datagram, when the stream carries UDP): `payload` must be 1 to
/// [`MAX_FRAME`] bytes.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    if !(1..=MAX_FRAME).contains(&payload.len()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame payload must be 1 to 64 KiB"));
    }
    let len = u32::try_from(payload.len()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.push(DATA);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame into `buf` (at least [`MAX_FRAME`] bytes): `Some(len)` for a [`DATA`] frame,
/// `None` for [`EOF`] or a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut header = [0u8; HEADER];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    match header[0] {
        DATA if (1..=MAX_FRAME.min(buf.len())).contains(&len) => {
            r.read_exact(&mut buf[..len]).await?;
            Ok(Some(len))
        }
        EOF if len == 0 => Ok(None),
        kind => Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: kind {kind}, {len} bytes"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two relays back to back over an in-memory "vsock": what one plain end writes arrives at
    /// the other, and a half-close travels while the other direction keeps flowing.
    #[tokio::test]
    async fn half_close_travels_and_the_other_direction_keeps_flowing() -> io::Result<()> {
        let (vsock_a, vsock_b) = tokio::io::duplex(1024);
        let (mut client, client_end) = tokio::io::duplex(1024);
        let (server_end, mut server) = tokio::io::duplex(1024);
        let r1 = tokio::spawn(relay(vsock_a, client_end));
        let r2 = tokio::spawn(relay(vsock_b, server_end));

        client.write_all(b"hello").await?;
        client.shutdown().await?; // like `docker run -i` after stdin's EOF
        let mut got = Vec::new();
        server.read_to_end(&mut got).await?;
        assert_eq!(got, b"hello");

        // The pipes hold 1 KiB: the writer must run while the reader drains.
        let big = vec![7u8; 3 * MAX_FRAME + 11];
        let len = big.len();
        let writer = tokio::spawn(async move {
            server.write_all(&big).await?;
            server.shutdown().await
        });
        let mut back = Vec::new();
        client.read_to_end(&mut back).await?;
        assert_eq!(back.len(), len);
        assert!(writer.await.is_ok_and(|r| r.is_ok()));
        assert!(r1.await.is_ok_and(|r| r.is_ok()) && r2.await.is_ok_and(|r| r.is_ok()));
        Ok(())
    }

    #[tokio::test]
    async fn an_abrupt_end_or_a_bad_frame_is_an_error() {
        let (vsock_a, mut vsock_b) = tokio::io::duplex(64);
        let (_client, client_end) = tokio::io::duplex(64);
        let relay = tokio::spawn(relay(vsock_a, client_end));
        let _ = vsock_b.write_all(&[9, 0, 0, 0, 1, 0]).await;
        assert!(relay.await.is_ok_and(|r| r.is_err()));

        let (vsock_a, vsock_b) = tokio::io::duplex(64);
        let (_client, client_end) = tokio::io::duplex(64);
        let relay = tokio::spawn(super::relay(vsock_a, client_end));
        drop(vsock_b);
        assert!(relay.await.is_ok_and(|r| r.is_err()));
    }

    #[tokio::test]
    async fn frames_keep_datagram_boundaries() -> io::Result<()> {
        let (mut a, mut b) = tokio::io::duplex(256);
        write_frame(&mut a, b"one").await?;
        write_frame(&mut a, b"second").await?;
        assert!(write_frame(&mut a, b"").await.is_err());
        drop(a);
        let mut buf = vec![0u8; MAX_FRAME];
        assert_eq!(read_frame(&mut b, &mut buf).await?, Some(3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(read_frame(&mut b, &mut buf).await?, Some(6));
        assert_eq!(read_frame(&mut b, &mut buf).await?, None);
        Ok(())
    }
}
