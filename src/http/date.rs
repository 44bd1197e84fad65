//! The Date header of answers thrust sends itself over HTTP/2 (hyper adds
//! it on HTTP/1), formatted once a second per worker thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    static NOW: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
}

pub fn now() -> HeaderValue {
    let time = SystemTime::now();
    let second = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    NOW.with_borrow_mut(|(at, value)| match value {
        Some(value) if *at == second => value.clone(),
        _ => {
            let fresh = HeaderValue::try_from(httpdate::fmt_http_date(time))
                .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            *at = second;
            *value = Some(fresh.clone());
            fresh
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let value = super::now();
        let parsed = httpdate::parse_http_date(value.to_str().unwrap()).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age.as_secs() <= 2);
    }
}
