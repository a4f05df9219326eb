//! Counts gRPC message payload bytes in an HTTP/2 body stream: each message is a 5-byte
//! prefix (compressed flag, big-endian length) and then its payload; A66 sizes count the
//! payloads only ("does not include grpc or transport framing bytes").

/// A streaming parser of the length-prefixed message framing.
#[derive(Debug, Default, Clone)]
pub(crate) struct MessageCounter {
    /// Prefix bytes still to read of the current message (0 = inside a payload or idle).
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes still to come of the current message.
    remaining: u64,
    /// Payload bytes seen so far.
    pub(crate) total: u64,
}

impl MessageCounter {
    /// Feeds the next chunk of the body.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let take = (self.remaining).min(chunk.len() as u64);
                self.remaining -= take;
                self.total += take;
                chunk = chunk.get(take as usize..).unwrap_or_default();
                continue;
            }
            let need = 5 - self.header_len;
            let take = need.min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                dst.copy_from_slice(head);
            }
            self.header_len += take;
            chunk = rest;
            if self.header_len == 5 {
                let [_, a, b, c, d] = self.header;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.header_len = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_payloads_across_chunk_boundaries() {
        let mut stream = Vec::new();
        for len in [3u32, 0, 7] {
            stream.push(0);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(9u8, len as usize));
        }
        for split in 1..stream.len() {
            let mut c = MessageCounter::default();
            for part in stream.chunks(split) {
                c.feed(part);
            }
            assert_eq!(c.total, 10, "chunk size {split}");
        }
    }
}
