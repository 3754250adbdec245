//! A plugin built for `jobhost:plugin@9.0.0`, a contract no host knows yet:
//! the same handler as today's, under a version a host must not guess at.

wit_bindgen::generate!({
    inline: "
        package jobhost:plugin@9.0.0;

        interface types {
            record job {
                id: string,
                job-type: string,
                payload: list<u8>,
            }
            variant failure {
                retry(string),
                fatal(string),
            }
            record plugin-info {
                name: string,
                version: string,
                handles: list<string>,
            }
        }

        interface host {
            log: func(message: string);
        }

        interface handler {
            use types.{job, failure, plugin-info};
            describe: func() -> plugin-info;
            handle: func(job: job) -> result<list<u8>, failure>;
        }

        world plugin {
            import host;
            export handler;
        }
    ",
});

use exports::jobhost::plugin::handler::{Failure, Guest, Job, PluginInfo};

struct Newer;

impl Guest for Newer {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "newer-wit".to_owned(),
            version: "0.1.0".to_owned(),
            handles: vec!["newer.*".to_owned()],
        }
    }

    fn handle(job: Job) -> Result<Vec<u8>, Failure> {
        jobhost::plugin::host::log(&job.id);
        Ok(Vec::new())
    }
}

export!(Newer);
