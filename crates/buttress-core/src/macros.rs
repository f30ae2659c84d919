//! Boilerplate every layer crate needs, written once (as tower-http does
//! with its private macros). Hidden from the docs: for buttress crates.

/// `get_ref`, `get_mut` and `into_inner` for a service struct whose inner
/// service is the field `inner` of type `S`. Use inside `impl<S, ..> X<S, ..>`.
#[doc(hidden)]
#[macro_export]
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the service, returning the inner one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

/// A named future type that is the future `$actual` and nothing more:
/// `opaque_future! { /// docs
/// pub type ResponseFuture<F> = Inner<F>; }` defines a `ResponseFuture<F>`
/// with a crate-private `new(inner)` that polls `inner`.
#[doc(hidden)]
#[macro_export]
macro_rules! opaque_future {
    ($(#[$m:meta])* pub type $name:ident<$($param:ident),+> = $actual:ty;) => {
        $crate::__private::pin_project! {
            $(#[$m])*
            pub struct $name<$($param),+> {
                #[pin]
                inner: $actual,
            }
        }

        impl<$($param),+> $name<$($param),+> {
            #[allow(dead_code)]
            pub(crate) fn new(inner: $actual) -> Self {
                Self { inner }
            }
        }

        impl<$($param),+> ::std::fmt::Debug for $name<$($param),+> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<$($param),+> ::std::future::Future for $name<$($param),+>
        where
            $actual: ::std::future::Future,
        {
            type Output = <$actual as ::std::future::Future>::Output;

            #[inline]
            fn poll(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use std::future::{Future, Ready, ready};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    struct Svc<S> {
        inner: S,
    }

    impl<S> Svc<S> {
        crate::define_inner_service_accessors!();
    }

    crate::opaque_future! {
        /// A test future.
        pub type Opaque<T> = Ready<T>;
    }

    #[test]
    fn accessors_and_opaque_futures() {
        let mut s = Svc { inner: 3 };
        *s.get_mut() += 1;
        assert_eq!((*s.get_ref(), s.into_inner()), (4, 4));
        let fut = pin!(Opaque::new(ready(7)));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(fut.poll(&mut cx), Poll::Ready(7));
        assert!(format!("{:?}", Opaque::new(ready(1))).starts_with("Opaque"));
    }
}
