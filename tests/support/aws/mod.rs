//! Amazon's side: moto (ECS, EC2, Auto Scaling, CloudWatch behind the CBOR proxy), the ECS
//! agent's introspection API and IMDS as local mocks, a fault-injecting proxy, a seeded
//! cluster and its Auto Scaling group.

pub mod asg;
pub mod cwpeer;
pub mod ecs_agent;
pub mod ecs_cluster;
pub mod ecs_peer;
pub mod ecs_world;
pub mod faultproxy;
pub mod imds;
pub mod moto;
