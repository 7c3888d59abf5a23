//! Listing: filters and dojot's pagination (whose `total` is the number of pages).

use serde::Serialize;
use serde_json::Value;

use model::catalog::CatalogError;

/// Filters and paging of `GET /device` and `GET /template`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page_size: usize,
    pub page_num: usize,
    /// `attr=label=value`: static value (override first) equals `value`.
    pub attr: Vec<(String, String)>,
    /// `attr_type=value_type`: has an attribute of that value type.
    pub attr_type: Vec<String>,
    /// Substring of the label.
    pub label: Option<String>,
    /// Devices only: built from this template.
    pub template: Option<i64>,
    /// `label` sorts by label; default by id.
    pub sort_by_label: bool,
}

/// Largest page accepted.
pub const MAX_PAGE_SIZE: usize = 1000;

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            page_size: 20,
            page_num: 1,
            attr: vec![],
            attr_type: vec![],
            label: None,
            template: None,
            sort_by_label: false,
        }
    }
}

impl ListQuery {
    /// Builds a query from raw `(key, value)` pairs (keys may repeat). Unknown keys are
    /// ignored, as dojot did; `extra` lists keys the caller handles itself.
    pub fn from_pairs(pairs: &[(String, String)], extra: &[&str]) -> Result<Self, CatalogError> {
        let mut q = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "page_size" => {
                    q.page_size = parse_num(v, "page_size")?;
                    if q.page_size < 1 {
                        return Err(CatalogError::BadRequest("At least one entry per page is mandatory".into()));
                    }
                    if q.page_size > MAX_PAGE_SIZE {
                        return Err(CatalogError::BadRequest(format!("page_size must be at most {MAX_PAGE_SIZE}")));
                    }
                }
                "page_num" => {
                    q.page_num = parse_num(v, "page_num")?;
                    if q.page_num < 1 {
                        return Err(CatalogError::BadRequest("Page numbers must be greater than 1".into()));
                    }
                }
                "attr" => {
                    let (l, val) = v.split_once('=').ok_or_else(|| {
                        CatalogError::BadRequest("attr filters must have the form attr=label=value".into())
                    })?;
                    q.attr.push((l.to_string(), val.to_string()));
                }
                "attr_type" => q.attr_type.push(v.clone()),
                "label" => q.label = Some(v.clone()),
                "template" => q.template = Some(parse_num(v, "template")? as i64),
                "sortBy" => match v.as_str() {
                    "label" => q.sort_by_label = true,
                    "id" => q.sort_by_label = false,
                    _ => return Err(CatalogError::BadRequest("sortBy must be 'label' or 'id'".into())),
                },
                k if extra.contains(&k) => {}
                _ => {}
            }
        }
        Ok(q)
    }

    /// Cuts one page out of `items`.
    pub fn paginate<T>(&self, items: Vec<T>) -> Page<T> {
        let total_items = items.len();
        let pages = total_items.div_ceil(self.page_size);
        let start = (self.page_num - 1).saturating_mul(self.page_size);
        let items: Vec<T> = items.into_iter().skip(start).take(self.page_size).collect();
        let has_next = self.page_num < pages;
        Page {
            items,
            pagination: Pagination {
                page: self.page_num,
                total: pages,
                has_next,
                next_page: has_next.then_some(self.page_num + 1),
            },
        }
    }
}

fn parse_num(v: &str, name: &str) -> Result<usize, CatalogError> {
    // dojot answered 500 here for non-numeric values; this is a client error.
    v.trim()
        .parse::<i64>()
        .map(|n| n.max(0) as usize)
        .map_err(|_| CatalogError::BadRequest(format!("{name} must be an integer")))
}

/// dojot's P.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pagination {
    pub page: usize,
    /// Number of pages (dojot's `page.pages`), not of items.
    pub total: usize,
    pub has_next: bool,
    pub next_page: Option<usize>,
}

/// One page of rendered items.
#[derive(Debug, Clone)]
pub struct Page<T = Value> {
    pub items: Vec<T>,
    pub pagination: Pagination,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn pagination_total_is_pages() {
        let q = ListQuery::from_pairs(&pairs(&[("page_size", "2"), ("page_num", "2")]), &[]).unwrap();
        let p = q.paginate((0..5).collect::<Vec<_>>());
        assert_eq!(p.items, [2, 3]);
        assert_eq!(p.pagination, Pagination { page: 2, total: 3, has_next: true, next_page: Some(3) });
        let last = ListQuery { page_num: 3, ..q.clone() }.paginate((0..5).collect::<Vec<_>>());
        assert_eq!((last.items, last.pagination.has_next, last.pagination.next_page), (vec![4], false, None));
        let empty = ListQuery::default().paginate(Vec::<i32>::new());
        assert_eq!(empty.pagination.total, 0);
    }

    #[test]
    fn bogus_paging_is_400_not_500() {
        for (k, v) in [
            ("page_num", "0"),
            ("page_size", "0"),
            ("page_num", "abc"),
            ("page_size", "1e3"),
            ("page_size", "5000"),
            ("attr", "noequals"),
            ("sortBy", "x"),
        ] {
            assert!(ListQuery::from_pairs(&pairs(&[(k, v)]), &[]).is_err(), "{k}={v}");
        }
        let q = ListQuery::from_pairs(&pairs(&[("attr", "a=b=c"), ("attr", "x=1"), ("sortBy", "label")]), &[]).unwrap();
        assert_eq!(q.attr, [("a".into(), "b=c".into()), ("x".into(), "1".into())]);
        assert!(q.sort_by_label);
    }
}
