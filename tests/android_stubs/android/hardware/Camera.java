package android.hardware;

import android.graphics.SurfaceTexture;
import java.io.IOException;

@Deprecated
public class Camera {
    public static Camera open() { throw new RuntimeException("Stub!"); }
    public final void setPreviewTexture(SurfaceTexture surfaceTexture) throws IOException { throw new RuntimeException("Stub!"); }
    public final void startPreview() { throw new RuntimeException("Stub!"); }
    public final void stopPreview() { throw new RuntimeException("Stub!"); }
    public final void release() { throw new RuntimeException("Stub!"); }
}
