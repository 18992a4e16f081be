use candle_core::Device;
use lectern_gpu::{Capabilities, DeviceKind};

use crate::ModelError;

/// The compute backends this build of Lectern was compiled with.
pub fn capabilities() -> Capabilities {
    Capabilities {
        cuda: cfg!(feature = "cuda"),
        metal: cfg!(feature = "metal"),
    }
}

/// Opens the candle device for a device chosen by the GPU manager.
pub fn candle_device(kind: &DeviceKind) -> Result<Device, ModelError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda(i) => {
            Device::new_cuda(*i).map_err(|e| ModelError::Device(format!("cuda:{i}: {e}")))
        }
        DeviceKind::Metal => {
            Device::new_metal(0).map_err(|e| ModelError::Device(format!("metal: {e}")))
        }
    }
}
